-- On a message "N", sends N binary messages of 64 KiB and then "done": to a client that
-- does not read, the sends must wait (the outbox is bounded) without stopping others.
local H = {}
local block = string.rep("f", 65536)
function H.handle_message(msg)
	for _ = 1, tonumber(msg.data) do
		assert(msg.conn:send(block, { msg_type = "BINARY" }))
	end
	msg.conn:send("done")
end
return H
