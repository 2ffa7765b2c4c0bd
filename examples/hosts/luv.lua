-- The module inside a luv (libuv) loop: the echo and chat handlers of examples/server.lua
-- served from uv.run(), next to a luv timer of the program's own that keeps its cadence.
-- The same code runs in Neovim with vim.uv (vim.loop before 0.10) instead of require("luv").
--
--   lua5.4 examples/hosts/luv.lua [PORT] [once]
--
-- `once`: exit after the first WebSocket client has come and gone, printing how the
-- program's timer fared meanwhile ("timer: N ticks while connected, longest gap X ms").
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../?.lua;" .. package.path

local uv = require("luv")
local ws = require("service_utils.WS.web_socket")

local port, once = tonumber(arg[1] or "8080"), arg[2] == "once"
local server = ws.server({ host = "127.0.0.1", port = port, handler_base = "handlers" })
local driver = ws.hosts.luv(uv) -- the module now runs whenever uv.run() does

-- The program's own work: a 10 ms timer, timed while a client is connected.
local ticks, longest, last, seen = 0, 0, nil, false
local timer = uv.new_timer()
timer:start(10, 10, function()
	uv.update_time()
	local now = uv.now()
	if ws.open_connections() > 0 then
		seen = true
		ticks = ticks + 1
		longest = math.max(longest, now - (last or now))
	elseif once and seen then
		server:stop()
		ws.step(0.05) -- the closing handshakes of the stop
		driver.stop()
		timer:close()
		print(("timer: %d ticks while connected, longest gap %d ms"):format(ticks, longest))
	end
	last = now
end)

print(("listening on ws://%s:%d"):format(server.host, server.port))
io.stdout:flush()
uv.run()
