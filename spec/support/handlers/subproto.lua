-- Speaks two subprotocols, preferring chat.v2; answers every message with the one agreed.
return {
	subprotocols = { "chat.v2", "chat.v1" },
	handle_message = function(msg)
		msg.conn:send(tostring(msg.conn.subprotocol))
	end,
}
