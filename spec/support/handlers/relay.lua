-- On a message "URL PAYLOAD", opens a client connection to URL, sends PAYLOAD and answers
-- with what came back: connect, send and recv from inside a handler.
local ws = require("service_utils.WS.web_socket")
local H = {}
function H.handle_message(msg)
	local url, payload = msg.data:match("^(%S+) (.*)$")
	local conn, err = ws.connect({ url = url, hdrs = {}, external = false, timeout = 5 })
	if not conn then
		msg.conn:send("connect failed: " .. tostring(err))
		return
	end
	conn:send(payload)
	local reply = conn:recv(5)
	msg.conn:send("via relay: " .. (reply and reply.data or "nothing"))
	conn:close()
end
return H
