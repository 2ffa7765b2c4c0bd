-- The module inside a copas loop, next to a copas TCP server: one process, one thread
-- serving a line echo over plain TCP (copas) and WebSocket (this module: the echo and chat
-- handlers of examples/server.lua). copas 1.x (Debian 12's) has no timers of its own, so
-- the program's periodic work is a deadline checked each round of its loop, which keeps
-- its cadence when every round returns soon enough.
--
--   lua5.1 examples/hosts/copas.lua [PORT] [once]     (Debian 12's lua-copas: 5.1, LuaJIT)
--
-- Prints "listening on ws://127.0.0.1:PORT" and "tcp on 127.0.0.1:TCP_PORT".
-- `once`: exit after the first WebSocket client has come and gone, printing how the
-- periodic work fared meanwhile ("timer: N ticks while connected, longest gap X ms").
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../?.lua;" .. package.path

local copas = require("copas")
local socket = require("socket")
local ws = require("service_utils.WS.web_socket")

local port, once = tonumber(arg[1] or "8080"), arg[2] == "once"

-- copas: a line echo on its own port.
local tcp = assert(socket.bind("127.0.0.1", 0))
copas.addserver(tcp, function(raw)
	local client = copas.wrap(raw)
	while true do
		local line = client:receive("*l")
		if line == nil then
			return
		end
		client:send(line .. "\n")
	end
end)

local server = ws.server({ host = "127.0.0.1", port = port, handler_base = "handlers" })
local driver = ws.hosts.copas(copas) -- the module now runs in driver.step / driver.loop

-- The program's own work: every 10 ms, timed while a client is connected.
local ticks, longest, last, seen, due = 0, 0, nil, false, socket.gettime()
local finished = false
local function periodic()
	local now = socket.gettime()
	if now < due then
		return
	end
	due = now + 0.01
	if ws.open_connections() > 0 then
		seen = true
		ticks = ticks + 1
		longest = math.max(longest, now - (last or now))
	elseif once and seen then
		finished = true
	end
	last = now
end

local _, tcp_port = tcp:getsockname()
print(("listening on ws://%s:%d"):format(server.host, server.port))
print(("tcp on 127.0.0.1:%d"):format(tcp_port))
io.stdout:flush()
driver.loop(function()
	periodic()
	return finished
end, 0.01)
server:stop()
ws.step(0.05) -- the closing handshakes of the stop
driver.stop()
print(("timer: %d ticks while connected, longest gap %d ms"):format(ticks, longest * 1000))
