-- Topics across server processes through a real Redis (Debian's redis-server, started
-- here on a free 127.0.0.1 port with persistence off, stopped by its PID): two servers on
-- two ports share it. Faults are real too: Redis stopped, paused (SIGSTOP) and continued.
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

local redis_stats = helper.redis_stats

-- Deliveries the server of `conn` skipped for slow subscribers (stats().publish_dropped).
local function slow_drops(conn)
	return tonumber(ask(conn, "stats"):match("dropped=(%d+)"))
end

-- Frames read from `conn` until none comes for `quiet` seconds (at most `max`).
local function drain(conn, quiet, max)
	local n = 0
	while n < max and next_frame(conn, quiet) do
		n = n + 1
	end
	return n
end


describe("the pubsub option", function()
	it("is refused, naming what is wrong, when it cannot be honoured", function()
		local ws = require("service_utils.WS.web_socket")
		local url = "redis://127.0.0.1:6379/0"
		for _, case in ipairs({
			{ { redis = "http://x/" }, "ws.server: pubsub.redis 'http://x/' is not a Redis URL" },
			{ { redis = url, redis_cluster = { url } }, "ws.server: pubsub takes redis (one Redis) or redis_cluster (a Redis Cluster), not both" },
			{ {}, "ws.server: pubsub.redis must be a redis:// URL (or redis_cluster a list of them), got nil" },
			{ { redis_cluster = {} }, "ws.server: pubsub.redis_cluster must list at least one node's redis:// URL" },
			{ { redis_cluster = { url, "http://x/" } }, "ws.server: pubsub.redis_cluster[2] 'http://x/' is not a Redis URL" },
			{ { redis = url, max_queued_bytes = 0 }, "ws.server: pubsub.max_queued_bytes must be a whole number from 1 to" },
		}) do
			local ok, err = pcall(ws.server, { handler_base = "handlers", pubsub = case[1] })
			assert.is_false(ok)
			assert.matches(case[2], tostring(err), 1, true)
		end
	end)
end)

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

	it("deliver a burst that fits max_queued_bytes in full, though the loop is busy while Redis answers", function()
		local sub = helper.open(a.port, "/pubsub")
		ask(sub, "sub burst")
		assert(helper.eventually(function() return numsub(redis.port, "ws:burst") == 1 end, 5))
		local publisher = helper.open(b.port, "/pubsub")
		local before = redis_stats(publisher)
		local a_before, a_slow_before = redis_stats(sub).received, slow_drops(sub)
		assert.are.equal(8 * 1024 * 1024, before.max, "the documented default bound")
		-- 100 x 64 KiB (6.4 MiB, under the 8 MiB bound) at once; then the publisher's
		-- loop is kept busy in Lua for 1.5 s while the first round trip is under way.
		assert.matches("^burst peak_queued=%d+", ask(publisher, "burst burst 100 65536 1.5"))
		assert(helper.eventually(function() return redis_stats(publisher).queued == 0 end, 10))
		local after = redis_stats(publisher)
		assert.are.equal(0, after.dropped - before.dropped, "nothing dropped")
		assert.are.equal(100, after.sent - before.sent)
		local frames = drain(sub, 2, 200)
		assert.are.equal(100, redis_stats(sub).received - a_before, "every message reached the other server")
		-- the subscriber reads slowly: A may skip it for some (its slow_subscriber rule, counted)
		assert.are.equal(100, frames + slow_drops(sub) - a_slow_before, "and was delivered or counted there")
		sub:close()
		publisher:close()
	end)

	it("hold at most max_queued_bytes while Redis is paused (SIGSTOP), count what did not fit, deliver the rest after SIGCONT", function()
		local url = ("redis://127.0.0.1:%d/0"):format(redis.port)
		local c = helper.start_server({ pubsub_redis = url, pubsub_max_queued_bytes = 1048576 })
		local sub = helper.open(a.port, "/pubsub")
		ask(sub, "sub paused")
		assert(helper.eventually(function() return numsub(redis.port, "ws:paused") == 1 end, 5))
		local publisher = helper.open(c.port, "/pubsub")
		assert(helper.eventually(function() return redis_stats(publisher).connected == "true" end, 5))
		local before = redis_stats(publisher)
		assert(os.execute(("kill -STOP %d"):format(redis.pid)))
		local ok, err = pcall(function()
			local peak = tonumber(ask(publisher, "burst paused 40 65536 0"):match("peak_queued=(%d+)"))
			assert(peak <= 1048576, "queued bytes over the bound: " .. peak)
			local paused = redis_stats(publisher)
			assert(paused.dropped - before.dropped >= 24, "40 x 64 KiB do not fit in 1 MiB: the rest is counted")
			assert.are.equal(before.sent, paused.sent, "nothing answered while Redis is paused")
		end)
		assert(os.execute(("kill -CONT %d"):format(redis.pid)))
		assert(ok, err)
		assert(helper.eventually(function() return redis_stats(publisher).queued == 0 end, 10))
		local after = redis_stats(publisher)
		local sent, dropped = after.sent - before.sent, after.dropped - before.dropped
		assert.are.equal(40, sent + dropped, "every publish was either sent or counted as dropped")
		assert(sent >= 1 and sent <= 16, "what fit in 1 MiB was kept: " .. sent)
		assert.are.equal(sent, drain(sub, 2, 100), "what was kept was delivered after SIGCONT, each once")
		sub:close()
		publisher:close()
		c.stop()
	end)

	it("keep subscription churn as the wanted set: 400,000 subscribe/unsubscribe pairs leave nothing pending", function()
		local conn = helper.open(a.port, "/pubsub")
		ask(conn, "sub kept")
		assert(helper.eventually(function() return numsub(redis.port, "ws:kept") == 1 end, 5))
		local channels = redis_stats(conn).channels
		assert.are.equal("churned pending=0", ask(conn, "churn 400000"))
		assert.are.equal(0, numsub(redis.port, "ws:churn1"))
		assert.are.equal(0, numsub(redis.port, "ws:churn400000"))
		assert.are.equal(channels, redis_stats(conn).channels, "Redis was told no churned channel")
		redis.stop()
		assert(helper.eventually(function() return redis_stats(conn).connected == "false" end, 5))
		local pending = redis_stats(conn).pending
		assert.are.equal("churned pending=" .. pending, ask(conn, "churn 400000"),
			"with Redis down, the churn adds nothing to what waits for it")
		ask(conn, "sub while_down")
		assert.are.equal(pending + 1, redis_stats(conn).pending, "a change made while down waits, once")
		redis = start_redis(redis.port)
		assert(helper.eventually(function()
			return numsub(redis.port, "ws:kept") == 1 and numsub(redis.port, "ws:while_down") == 1
		end, 15), "the new connection was told the current set")
		assert.are.equal(0, numsub(redis.port, "ws:churn1"))
		conn:close()
	end)
end)
