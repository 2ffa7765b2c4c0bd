-- Reached at /deep/nested: answers with its module name.
local H = {}
function H.handle_message(msg)
	msg.conn:send(msg.conn.handler)
end
return H
