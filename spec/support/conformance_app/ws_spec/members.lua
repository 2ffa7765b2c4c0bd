-- /ws_spec/members: the wrong way to keep a room — its members in a module table. Each
-- message is sent to the members this Lua state knows, then "MEMBERS <n>" to the sender.
-- Under evluaserver a frame may run in a fresh Lua state, where the table is empty: use
-- topics (ws_spec.room).
local members = {}

local H = {}

function H.handle_open(conn)
	members[#members + 1] = conn
end

function H.handle_message(msg)
	for _, conn in ipairs(members) do
		conn:send(msg.data)
	end
	msg.conn:send("MEMBERS " .. #members)
end

return H
