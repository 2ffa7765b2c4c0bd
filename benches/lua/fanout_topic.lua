-- /topic of the fan-out benchmark: each connection subscribes to one topic; a message is
-- published to it, the sender left out.
local ws = require("service_utils.WS.web_socket")

local H = {}

function H.handle_open(conn)
	conn:subscribe("all")
end

function H.handle_message(msg)
	ws.publish("all", msg.data, { msg_type = "BINARY", exclude = msg.conn })
end

return H
