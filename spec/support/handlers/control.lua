-- "stop" stops the whole server from inside a handler.
local H = {}
function H.handle_message(msg)
	if msg.data == "stop" then
		require("spec_server").server:stop()
	end
end
return H
