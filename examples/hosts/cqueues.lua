-- The module inside a cqueues loop, next to lua-http: one process, one thread, one loop
-- serving plain HTTP (lua-http, at http://127.0.0.1:HTTP_PORT/) and WebSocket (this
-- module: the echo and chat handlers of examples/server.lua), with a cqueues timer of the
-- program's own that keeps its cadence.
--
--   lua5.1 examples/hosts/cqueues.lua [PORT] [once]     (Debian 12's lua-http runs on 5.1 and LuaJIT)
--
-- Prints "listening on ws://127.0.0.1:PORT" and "http on http://127.0.0.1:HTTP_PORT/".
-- `once`: exit after the first WebSocket client has come and gone, printing how the
-- program's timer fared meanwhile ("timer: N ticks while connected, longest gap X ms").
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../?.lua;" .. package.path

local cqueues = require("cqueues")
local http_server = require("http.server")
local http_headers = require("http.headers")
local ws = require("service_utils.WS.web_socket")

local port, once = tonumber(arg[1] or "8080"), arg[2] == "once"
local cq = cqueues.new()

-- lua-http: every request gets a short text answer.
local http = assert(http_server.listen({
	host = "127.0.0.1",
	port = 0,
	cq = cq,
	onstream = function(_, stream)
		local request = stream:get_headers()
		local headers = http_headers.new()
		headers:append(":status", "200")
		headers:append("content-type", "text/plain")
		stream:write_headers(headers, false)
		stream:write_chunk("hello from lua-http: " .. request:get(":path") .. "\n", true)
	end,
}))
assert(http:listen())

local server = ws.server({ host = "127.0.0.1", port = port, handler_base = "handlers" })
local driver = ws.hosts.cqueues(cq) -- the module now runs whenever cq:loop() does

-- The program's own work: a 10 ms timer, timed while a client is connected.
cq:wrap(function()
	local ticks, longest, last, seen = 0, 0, nil, false
	while true do
		cqueues.sleep(0.01)
		local now = cqueues.monotime()
		if ws.open_connections() > 0 then
			seen = true
			ticks = ticks + 1
			longest = math.max(longest, now - (last or now))
		elseif once and seen then
			server:stop()
			cqueues.sleep(0.05) -- the closing handshakes of the stop
			driver.stop()
			http:close()
			print(("timer: %d ticks while connected, longest gap %d ms"):format(ticks, longest * 1000))
			return
		end
		last = now
	end
end)

local _, http_host, http_port = http:localname()
print(("listening on ws://%s:%d"):format(server.host, server.port))
print(("http on http://%s:%d/"):format(http_host, http_port))
io.stdout:flush()
assert(cq:loop())
