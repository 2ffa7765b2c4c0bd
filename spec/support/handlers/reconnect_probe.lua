-- A client-side msg_handler for the reconnect spec: records open, messages and closes in
-- `events`, and checks that it is handed the reconnecting connection object.
local H = { events = {} }
function H.handle_open(conn)
	H.events[#H.events + 1] = "open"
	H.conn_seen = conn
end
function H.handle_message(msg)
	H.events[#H.events + 1] = "msg:" .. msg.data
	H.conn_seen = msg.conn
end
function H.handle_close(msg)
	H.events[#H.events + 1] = "close:" .. msg.code
end
return H
