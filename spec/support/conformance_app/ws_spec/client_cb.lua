-- The msg_handler of the client connection /ws_spec/echo opens on "CONNECTCB": what the server
-- answers arrives here, through ws.handle_msg, in another dispatch; it is logged, and the
-- connection closed (the server's answer to the close arrives by ws.handle_msg too).
local log = require("ws_spec.log")
local cb = {}
function cb.handle_open(conn)
	log("client_cb open", tostring(conn.path))
end
function cb.handle_message(msg)
	log("client_cb got", msg.data)
	msg.conn:close(1000, "done")
end
return cb
