-- On any message: waits 0.3 s (long enough for a client that resets the connection to
-- have done so), then sends 64 KiB binary messages, 20 of them, ignoring failures, and
-- writes "firehose: sent" to stderr. Large sends take the direct-write path to the socket.
local ws = require("service_utils.WS.web_socket")
local H = {}
local block = string.rep("h", 65536)
function H.handle_message(msg)
	ws.sleep(0.3)
	for _ = 1, 20 do
		msg.conn:send(block, { msg_type = "BINARY" })
	end
	io.stderr:write("firehose: sent\n")
	io.stderr:flush()
end
return H
