-- The Redis faults of issue 24, measured in one server process (run by
-- benches/redis_faults.sh): LUA redis_faults.lua REDIS_PORT REDIS_PID.
-- A server with pubsub on the given Redis drives itself with a client (spec/support's
-- pubsub handler) through four cases and prints, for each, the process's RSS growth and
-- what stats().pubsub counted; a redis-cli subscriber (started by the shell script)
-- counts what Redis delivered.
package.path = "spec/support/?.lua;" .. package.path
local ws = require("service_utils.WS.web_socket")

local redis_port, redis_pid = tonumber(arg[1]), tonumber(arg[2])
local server = ws.server({
	handler_base = "handlers",
	pubsub = { redis = ("redis://127.0.0.1:%d/0"):format(redis_port) },
})
package.loaded.spec_server = { server = server }

local function rss_kib()
	for line in io.lines("/proc/self/status") do
		local kib = line:match("^VmRSS:%s+(%d+)")
		if kib then return tonumber(kib) end
	end
end

local function drained(seconds)
	for _ = 1, seconds * 10 do
		if server:stats().pubsub.queued_bytes == 0 then return true end
		ws.sleep(0.1)
	end
	return false
end

ws.spawn(function()
	local conn = assert(ws.connect({ url = ("ws://127.0.0.1:%d/pubsub"):format(server.port), hdrs = {}, external = true }))
	local function ask(cmd)
		assert(conn:send(cmd))
		return assert(conn:recv(120)).data
	end
	for _ = 1, 50 do
		if server:stats().pubsub.connected then break end
		ws.sleep(0.1)
	end
	-- run() returns the RSS at its peak and the handler's answer
	local function case(name, run)
		local rss, before = rss_kib(), server:stats().pubsub
		local peak, answer = run()
		local after = server:stats().pubsub
		print(("%-44s rss +%5.1f MiB (at peak +%5.1f)  sent +%d  dropped +%d  %s"):format(name,
			(rss_kib() - rss) / 1024, (peak - rss) / 1024, after.sent - before.sent,
			after.dropped - before.dropped, answer))
		io.stdout:flush()
	end
	case("1,500 x 64 KiB at once, Redis healthy", function()
		local answer = ask("burst faults 1500 65536 0")
		local peak = rss_kib()
		drained(60)
		return peak, answer
	end)
	case("1,500 x 64 KiB at once, Redis paused 3 s", function()
		os.execute("kill -STOP " .. redis_pid)
		local answer = ask("burst faults 1500 65536 0")
		ws.sleep(3)
		local peak = rss_kib()
		os.execute("kill -CONT " .. redis_pid)
		drained(60)
		return peak, answer
	end)
	case("400,000 subscribe/unsubscribe pairs, Redis up", function()
		local answer = ask("churn 400000")
		return rss_kib(), answer
	end)
	os.execute("kill -STOP " .. redis_pid)
	case("400,000 subscribe/unsubscribe pairs, Redis paused", function()
		local answer = ask("churn 400000")
		return rss_kib(), answer
	end)
	os.execute("kill -CONT " .. redis_pid)
	conn:close()
	server:stop()
end)
server:run()
