-- Topics across servers through a real Redis Cluster with sharded pub/sub: three masters
-- of Debian's redis-server (7.x), started here on free 127.0.0.1 ports with
-- --cluster-enabled and joined with `redis-cli --cluster create`, no replicas, stopped by
-- their PIDs. Two servers use it; topics are chosen so that their channels live on each
-- of the three masters; then one master is stopped and started again.
local helper = require("spec.support.helper")

local missing
if not io.open("/usr/bin/redis-server") or not io.open("/usr/bin/redis-cli") then
	missing = "redis-server / redis-cli are not installed (apt-get install redis-server)"
end

local ask = helper.ask
local next_frame = helper.next_frame

local function redis_cli(port, args)
	return helper.lines_of(("redis-cli -p %d %s 2>&1"):format(port, args))
end

-- Starts a cluster-enabled redis-server on `port`, its nodes file in `dir`.
local function start_master(port, dir)
	return helper.start_daemon("redis-server", ("redis-server --port %d --bind 127.0.0.1 --dir %s "
		.. "--cluster-enabled yes --cluster-config-file nodes-%d.conf --cluster-node-timeout 2000 "
		.. "--cluster-require-full-coverage no --save \"\" --appendonly no"):format(port, dir, port),
		port, ("%s/redis-cluster-%d.log"):format(helper.ARTIFACTS, port))
end

-- Subscribers the master on `port` has for the sharded channel.
local function shardnumsub(port, channel)
	return tonumber(redis_cli(port, "PUBSUB SHARDNUMSUB " .. channel)[2] or "")
end

-- port -> {first slot, last slot} of each master, from CLUSTER NODES.
local function slot_ranges(port)
	local ranges = {}
	for _, line in ipairs(redis_cli(port, "CLUSTER NODES")) do
		local p, from, to = line:match("^%S+ [%d.]+:(%d+)@%d+ %S*master%S* .- (%d+)%-(%d+)$")
		if p then ranges[tonumber(p)] = { tonumber(from), tonumber(to) } end
	end
	return ranges
end

-- A topic whose channel ws:<topic> has its slot on the master at `port`.
local function topic_on(port, ranges, prefix)
	for i = 1, 1000 do
		local topic = prefix .. i
		local slot = tonumber(redis_cli(port, "CLUSTER KEYSLOT ws:" .. topic)[1])
		if slot >= ranges[port][1] and slot <= ranges[port][2] then return topic end
	end
	error("no topic found for the master on " .. port)
end

local redis_stats = helper.redis_stats

describe("topics across servers through a Redis Cluster (sharded pub/sub)", function()
	if missing then
		pending("skipped: " .. missing)
		return
	end
	local masters, ports, dir, a, b, topics = {}, {}, nil, nil, nil, {}
	setup(function()
		dir = ("%s/redis-cluster-%d"):format(helper.ARTIFACTS, helper.free_port())
		os.execute("rm -rf " .. dir .. " && mkdir -p " .. dir)
		local hosts = {}
		for i = 1, 3 do
			ports[i] = helper.free_port()
			masters[i] = start_master(ports[i], dir)
			hosts[i] = "127.0.0.1:" .. ports[i]
		end
		local created = table.concat(helper.lines_of(("redis-cli --cluster create %s --cluster-replicas 0 --cluster-yes 2>&1")
			:format(table.concat(hosts, " "))), "\n")
		assert(created:find("All 16384 slots covered", 1, true), created)
		assert(helper.eventually(function()
			for _, port in ipairs(ports) do
				if not table.concat(redis_cli(port, "CLUSTER INFO"), "\n"):find("cluster_state:ok", 1, true) then
					return false
				end
			end
			return true
		end, 15), "the cluster did not reach cluster_state:ok")
		local ranges = slot_ranges(ports[1])
		for i, port in ipairs(ports) do
			topics[i] = topic_on(port, ranges, "shard" .. i .. "_")
		end
		-- each server knows two of the three nodes; the third it learns from the slot map
		local urls = ("redis://127.0.0.1:%d,redis://127.0.0.1:%d"):format(ports[1], ports[2])
		a = helper.start_server({ pubsub_redis_cluster = urls })
		b = helper.start_server({ pubsub_redis_cluster = urls })
	end)
	teardown(function()
		helper.stop_all()
		for _, m in ipairs(masters) do m.stop() end
	end)

	it("subscribe each topic on the master of its slot and deliver across servers exactly once", function()
		local sub = helper.open(a.port, "/pubsub")
		for i, topic in ipairs(topics) do
			assert.are.equal("subscribed " .. topic, ask(sub, "sub " .. topic))
			assert(helper.eventually(function() return shardnumsub(ports[i], "ws:" .. topic) == 1 end, 10),
				"A subscribed ws:" .. topic .. " on master " .. i)
		end
		local publisher = helper.open(b.port, "/pubsub")
		local before = redis_stats(publisher)
		for _, topic in ipairs(topics) do
			assert.are.equal("published 0", ask(publisher, ("pub %s to %s"):format(topic, topic)))
			assert.are.equal("to " .. topic, next_frame(sub, 5).payload)
		end
		assert.is_nil(next_frame(sub, 0.5), "each delivered once")
		assert.are.equal(3, redis_stats(publisher).sent - before.sent)
		assert.are.equal(0, redis_stats(publisher).dropped - before.dropped)
		ask(sub, "unsub " .. topics[3])
		assert(helper.eventually(function() return shardnumsub(ports[3], "ws:" .. topics[3]) == 0 end, 10),
			"the last local subscriber left: A unsubscribes on its master")
		sub:close()
		publisher:close()
	end)

	it("keep the other masters' topics flowing while one is down, count its drops, resubscribe when it is back", function()
		local sub = helper.open(a.port, "/pubsub")
		for _, topic in ipairs(topics) do ask(sub, "sub " .. topic) end
		assert(helper.eventually(function()
			return shardnumsub(ports[1], "ws:" .. topics[1]) == 1 and shardnumsub(ports[2], "ws:" .. topics[2]) == 1
				and shardnumsub(ports[3], "ws:" .. topics[3]) == 1
		end, 10))
		local publisher = helper.open(b.port, "/pubsub")
		masters[2].stop()
		local before = redis_stats(publisher)
		ask(publisher, ("pub %s while two is down"):format(topics[2]))
		assert(helper.eventually(function() return redis_stats(publisher).dropped > before.dropped end, 20),
			"the publish whose master is down is counted as dropped")
		for _, i in ipairs({ 1, 3 }) do
			ask(publisher, ("pub %s on %d"):format(topics[i], i))
			assert.are.equal("on " .. i, next_frame(sub, 10).payload, "master " .. i .. " still carries its topics")
		end
		masters[2] = start_master(ports[2], dir)
		assert(helper.eventually(function() return shardnumsub(ports[2], "ws:" .. topics[2]) == 1 end, 30),
			"A subscribed again on the restarted master")
		assert(helper.eventually(function()
			ask(publisher, ("pub %s back"):format(topics[2]))
			local frame = next_frame(sub, 1)
			return frame and frame.payload == "back"
		end, 30), "delivery through the restarted master resumed")
		sub:close()
		publisher:close()
	end)
end)
