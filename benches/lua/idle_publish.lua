-- Publishes each message it gets to the topic "all" (benches/lua/idle_server.lua).
local ws = require("service_utils.WS.web_socket")
local publish = {}

function publish.handle_message(msg)
	ws.publish("all", msg.data)
end

return publish
