-- A client-side msg_handler: records what it is given in `seen` (for the specs).
local H = { seen = {} }
function H.handle_message(msg)
	H.seen[#H.seen + 1] = msg.data
	if msg.data == "reply" then
		msg.conn:send("replied from the handler")
	end
end
function H.handle_pong(msg)
	H.seen[#H.seen + 1] = "pong:" .. msg.data
end
function H.handle_close(msg)
	H.seen[#H.seen + 1] = "close:" .. msg.code
end
return H
