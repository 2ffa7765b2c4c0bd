-- The benchmark's lua-resty-websocket peer: an echo handler for nginx's Lua module
-- (content_by_lua_file), as its documentation writes one: recv_frame in a loop, text and
-- binary echoed with send_text / send_binary, pings answered with send_pong, a close
-- answered with send_close. lua-resty-websocket is Debian's lua-nginx-websocket (the
-- module named nginx.websocket.*), unpacked by benches/peers/resty.sh.
local server = require("nginx.websocket.server")

local wb, err = server:new({ timeout = 60000, max_payload_len = 16 * 1024 * 1024 })
if not wb then
	ngx.log(ngx.ERR, "failed to accept the websocket: ", err)
	return ngx.exit(444)
end
while true do
	local data, kind
	data, kind, err = wb:recv_frame()
	if not data then
		if not string.find(err, "timeout", 1, true) then
			return ngx.exit(444)
		end
	elseif kind == "close" then
		wb:send_close()
		return ngx.exit(444)
	elseif kind == "ping" then
		wb:send_pong(data)
	elseif kind == "text" then
		wb:send_text(data)
	elseif kind == "binary" then
		wb:send_binary(data)
	end
end
