-- The benchmark's lua-http peer: an echo server on lua-http 0.4 and cqueues (Debian's
-- lua-http and lua-cqueues, which load on Lua 5.1 only), as a user would write it with
-- http.websocket: every message echoed with its type; pings are answered and closes
-- completed by ws:receive() itself.
--   lua5.1 benches/peers/lua_http_echo.lua      prints "listening on ws://127.0.0.1:PORT"
local http_server = require("http.server")
local websocket = require("http.websocket")

local function echo(ws)
	while true do
		local data, kind = ws:receive()
		if data == nil then
			return
		end
		if not ws:send(data, kind) then
			return
		end
	end
end

local server = assert(http_server.listen({
	host = "127.0.0.1",
	port = 0,
	onstream = function(_, stream)
		local headers = assert(stream:get_headers())
		local ws = websocket.new_from_stream(stream, headers)
		if ws == nil then
			return stream:shutdown()
		end
		ws.max_payload_len = 16 * 1024 * 1024
		if ws:accept() then
			echo(ws)
		end
		ws:close()
	end,
	onerror = function() end,
}))
assert(server:listen())
local _, _, port = server:localname()
print(("listening on ws://127.0.0.1:%d"):format(port))
io.stdout:flush()
assert(server:loop())
