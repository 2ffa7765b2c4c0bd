-- Topics across server processes through a real Redis (Debian's redis-server, started
-- here on a free 127.0.0.1 port with persistence off, stopped by its PID): two servers on
-- two ports share it.
local helper = require("spec.support.helper")

local missing
if not io.open("/usr/bin/redis-server") then
	missing = "redis-server is not installed (apt-get install redis-server)"
end

local free_port = helper.free_port

-- Starts redis-server on `port` (persistence off).
local function start_redis(port)
	return helper.start_daemon("redis-server", ("redis-server --port %d --bind 127.0.0.1 --save \"\" --appendonly no"):format(port),
		port, ("%s/redis-%d.log"):format(helper.ARTIFACTS, port))
end

-- How many subscribers Redis has on `channel`.
local function numsub(port, channel)
	local p = io.popen(("redis-cli -p %d PUBSUB NUMSUB %s 2>/dev/null"):format(port, channel))
	local lines = {}
	for line in p:lines() do
		lines[#lines + 1] = line
	end
	p:close()
	return tonumber(lines[2] or "")
end

local ask = helper.ask

local next_frame = helper.next_frame

describe("topics across servers through Redis", function()
	if missing then
		pending("skipped: " .. missing)
		return
	end
	local redis, a, b
	setup(function()
		redis = start_redis(free_port())
		local url = ("redis://127.0.0.1:%d/0"):format(redis.port)
		a = helper.start_server({ pubsub_redis = url })
		b = helper.start_server({ pubsub_redis = url })
	end)
	teardown(function()
		helper.stop_all()
		redis.stop()
	end)

	it("deliver what one server publishes to the other's subscribers, exactly once", function()
		local sub = helper.open(a.port, "/pubsub")
		assert.are.equal("subscribed news", ask(sub, "sub news"))
		assert(helper.eventually(function() return numsub(redis.port, "ws:news") == 1 end, 5),
			"server A did not subscribe on Redis")
		local publisher = helper.open(b.port, "/pubsub")
		assert.are.equal("published 0", ask(publisher, "pub news from B"), "no local subscriber on B")
		assert.are.equal("from B", next_frame(sub, 5).payload)
		assert.is_nil(next_frame(sub, 0.5), "delivered once")
		local local_sub = helper.open(b.port, "/pubsub")
		ask(local_sub, "sub news")
		assert.are.equal("published 1", ask(publisher, "pub news to both"))
		assert.are.equal("to both", next_frame(local_sub, 5).payload)
		assert.is_nil(next_frame(local_sub, 0.5), "B's own message does not come back to it from Redis")
		assert.are.equal("to both", next_frame(sub, 5).payload)
		assert.is_nil(next_frame(sub, 0.5))
		for _, s in ipairs({ sub, publisher, local_sub }) do s:close() end
	end)

	it("subscribe on Redis only to topics with local subscribers", function()
		local sub = helper.open(a.port, "/pubsub")
		ask(sub, "sub brief")
		assert(helper.eventually(function() return numsub(redis.port, "ws:brief") == 1 end, 5))
		ask(sub, "unsub brief")
		assert(helper.eventually(function() return numsub(redis.port, "ws:brief") == 0 end, 5),
			"the last local subscriber left: A unsubscribes on Redis")
		sub:close()
	end)

	it("keep delivering locally while Redis is down, count the remote drops, and resubscribe after", function()
		local sub = helper.open(a.port, "/pubsub")
		ask(sub, "sub alerts")
		local local_sub = helper.open(b.port, "/pubsub")
		ask(local_sub, "sub alerts")
		assert(helper.eventually(function() return numsub(redis.port, "ws:alerts") == 2 end, 5))
		redis.stop()
		local publisher = helper.open(b.port, "/pubsub")
		assert.are.equal("published 1", ask(publisher, "pub alerts while down"))
		assert.are.equal("while down", next_frame(local_sub, 5).payload)
		assert(helper.eventually(function()
			return ask(publisher, "redis"):match("dropped=(%d+)") ~= "0"
		end, 5), "the publish Redis could not take is counted")
		assert.is_nil(next_frame(sub, 0.5), "nothing reached A meanwhile")
		redis = start_redis(redis.port)
		assert(helper.eventually(function() return numsub(redis.port, "ws:alerts") == 2 end, 15),
			"both servers resubscribed after Redis came back")
		assert(helper.eventually(function() return ask(publisher, "redis"):match("connected=true") end, 15))
		-- the publisher reconnects on its own too: a publish gets through again
		assert(helper.eventually(function()
			ask(publisher, "pub alerts back again")
			return next_frame(sub, 0.5) ~= nil
		end, 15), "delivery resumed")
		for _, s in ipairs({ sub, local_sub, publisher }) do s:close() end
	end)
end)
