-- The msg_handler of the client connection /ws_spec/echo opens on "CONNECTCB": what the server
-- answers arrives here, through ws.handle_msg, in another dispatch; it is logged, and the
-- connection closed (the server's answer to the close arrives by ws.handle_msg too).
local cb = {}
function cb.handle_open(conn)
	local f = io.open(os.getenv("WS_TEST_LOG") or "/dev/null", "a")
	if f then
		f:write("client_cb open ", tostring(conn.path), "\n")
		f:close()
	end
end
function cb.handle_message(msg)
	local f = io.open(os.getenv("WS_TEST_LOG") or "/dev/null", "a")
	if f then
		f:write("client_cb got ", msg.data, "\n")
		f:close()
	end
	msg.conn:close(1000, "done")
end
return cb
