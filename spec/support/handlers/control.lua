-- "stop" stops the whole server from inside a handler; "max_queued" and "max_inflated"
-- answer the server's stats().max_queued_bytes and stats().max_inflated_bytes.
local H = {}
function H.handle_message(msg)
	local server = require("spec_server").server
	if msg.data == "stop" then
		server:stop()
	elseif msg.data == "max_queued" then
		msg.conn:send(tostring(server:stats().max_queued_bytes))
	elseif msg.data == "max_inflated" then
		msg.conn:send(tostring(server:stats().max_inflated_bytes))
	end
end
return H
