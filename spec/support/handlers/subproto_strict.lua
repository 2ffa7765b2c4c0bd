-- Speaks only chat.v2 and refuses clients that do not offer it.
return {
	subprotocols = { "chat.v2" },
	require_subprotocol = true,
	handle_message = function() end,
}
