-- /uncompressed: an echo whose handler class turns permessage-deflate off.
local H = { compression = false }
function H.handle_message(msg)
	msg.conn:send(msg.data)
end
return H
