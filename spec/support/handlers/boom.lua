-- Raises a Lua error on the message "boom"; echoes everything else.
local H = {}
function H.handle_message(msg)
	if msg.data == "boom" then
		error("kaboom from the test handler")
	end
	msg.conn:send(msg.data)
end
return H
