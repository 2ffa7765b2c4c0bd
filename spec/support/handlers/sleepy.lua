-- Sleeps for the number of seconds in the message, then answers "slept".
local ws = require("service_utils.WS.web_socket")
local H = {}
function H.handle_message(msg)
	ws.sleep(tonumber(msg.data))
	msg.conn:send("slept")
end
return H
