-- Sends 64 KiB blocks until send fails, then answers the failure on stdout of the
-- server log (via error) -- used with a client that never reads: send must time out.
local H = {}
local block = string.rep("s", 65536)
function H.handle_message(msg)
	for _ = 1, 100000 do
		local ok, err = msg.conn:send(block, { msg_type = "BINARY" })
		if not ok then
			io.stderr:write("slowsend: send returned nil, " .. tostring(err) .. "\n")
			return
		end
	end
end
return H
