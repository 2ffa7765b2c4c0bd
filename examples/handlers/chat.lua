-- /chat?room=NAME: every message is published to the room's topic, so everyone in the
-- room (the sender included) gets it; the room is "lobby" without a name. No state lives
-- in this module: the server's topics hold the members (which is what lets the same
-- handler run under evluaserver, where each frame may meet a fresh Lua state). A member
-- whose queue is full (it stopped reading) misses the message instead of holding up the
-- room (the server's slow_subscriber option).
local ws = require("service_utils.WS.web_socket")
local ws_const = require("service_utils.WS.ws_const")

local chat = {}

-- The topic of a connection's room: "chat:" and the room's name (letters, digits, _ and -).
local function topic_of(conn)
	return "chat:" .. ((conn.query or ""):match("room=([%w_%-]+)") or "lobby")
end

function chat.handle_open(conn)
	assert(conn:subscribe(topic_of(conn)))
end

function chat.handle_message(msg)
	local kind = msg.op_code == ws_const.FRAME_OP_BINARY and "BINARY" or "TEXT"
	ws.publish(topic_of(msg.conn), msg.data, { msg_type = kind })
end

return chat
