-- /ws_spec/room?room=NAME: the chat example's rule, kept in topics only (no module state,
-- which evluaserver would not keep between frames): every message goes to the room's
-- topic, the sender included.
local ws = require("service_utils.WS.web_socket")

local room = {}

local function topic_of(conn)
	return "room:" .. ((conn.query or ""):match("room=([%w_%-]+)") or "lobby")
end

function room.handle_open(conn)
	assert(conn:subscribe(topic_of(conn)))
end

function room.handle_message(msg)
	local n = ws.publish(topic_of(msg.conn), msg.data)
	if msg.data == "COUNT" then
		msg.conn:send("RECIPIENTS " .. n)
	end
end

return room
