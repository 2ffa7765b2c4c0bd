-- /loop of the fan-out benchmark: the members in a module table, a message sent to each
-- but the sender with try_send (one Lua call, one frame encoding and one copy each).
local H = {}

local members = {}
local opts = { msg_type = "BINARY" }

function H.handle_open(conn)
	members[conn] = true
end

function H.handle_message(msg)
	for conn in pairs(members) do
		if conn ~= msg.conn then
			conn:try_send(msg.data, opts)
		end
	end
end

function H.handle_close(msg)
	members[msg.conn] = nil
end

return H
