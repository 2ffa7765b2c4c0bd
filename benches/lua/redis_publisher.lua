-- How fast one server sends publishes to Redis through its bridge (run by
-- benches/redis_capacity.sh): LUA redis_publisher.lua REDIS_PORT SECONDS SIZE.
-- Publishes SIZE-byte messages to topic "cap" from a coroutine of the server's loop, 512
-- at a time then a yield (so the bridge's publisher runs), for SECONDS; prints what
-- stats().pubsub counted and the process's CPU seconds.
local ws = require("service_utils.WS.web_socket")
local gettime = require("socket").gettime

local port, seconds, size = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local server = ws.server({ handler_base = "handlers", pubsub = { redis = ("redis://127.0.0.1:%d/0"):format(port) } })

local function cpu_seconds()
	local f = assert(io.open("/proc/self/stat"))
	local stat = f:read("*a")
	f:close()
	local fields = {}
	for v in stat:sub(stat:find(")", 1, true) + 2):gmatch("%S+") do fields[#fields + 1] = v end
	return (tonumber(fields[12]) + tonumber(fields[13])) / 100 -- utime + stime, in ticks of 1/100 s
end

ws.spawn(function()
	for _ = 1, 50 do
		if server:stats().pubsub.connected then break end
		ws.sleep(0.1)
	end
	local payload = ("p"):rep(size)
	local start, cpu0, before = gettime(), cpu_seconds(), server:stats().pubsub
	while gettime() < start + seconds do
		for _ = 1, 512 do ws.publish("cap", payload) end
		ws.sleep(0)
	end
	for _ = 1, 100 do
		if server:stats().pubsub.queued_bytes == 0 then break end
		ws.sleep(0.05)
	end
	local after = server:stats().pubsub
	print(("sent %d dropped %d in %.2f s; server cpu %.2f s"):format(after.sent - before.sent,
		after.dropped - before.dropped, gettime() - start, cpu_seconds() - cpu0))
	io.stdout:flush()
	server:stop()
end)
server:run()
