-- /ws_spec/greeter: handle_open sends a greeting before the client says anything.
local greeter = {}
function greeter.handle_open(conn)
	conn:send("welcome " .. conn.path)
end
function greeter.handle_message(msg)
	msg.conn:send("you said " .. msg.data)
end
return greeter
