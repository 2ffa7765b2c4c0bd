-- /deflate_probe: answers each message with "<msg.compressed> <#msg.data>"; a message
-- "!plain <text>" is answered with <text> sent with {compress = false}.
local H = {}
function H.handle_message(msg)
	local plain = msg.data:match("^!plain (.*)$")
	if plain then
		msg.conn:send(plain, { compress = false })
	else
		msg.conn:send(tostring(msg.compressed) .. " " .. #msg.data)
	end
end
return H
