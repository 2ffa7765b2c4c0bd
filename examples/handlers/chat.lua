-- /chat: every message is broadcast to every connection on /chat (the sender included).
-- try_send never waits: a member whose outbox is full (it stopped reading) misses the
-- message instead of holding up the room.
local ws_const = require("service_utils.WS.ws_const")

local chat = {}

-- Open connections of the room, as a set.
local members = {}

function chat.handle_open(conn)
	members[conn] = true
end

function chat.handle_message(msg)
	local opts = { msg_type = msg.op_code == ws_const.FRAME_OP_BINARY and "BINARY" or "TEXT" }
	for conn in pairs(members) do
		conn:try_send(msg.data, opts)
	end
end

function chat.handle_close(msg)
	members[msg.conn] = nil
end

return chat
