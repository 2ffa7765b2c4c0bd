-- Accepts only pages from https://locked.example.
return {
	origins = { "https://locked.example" },
	handle_message = function(msg)
		msg.conn:send(msg.data)
	end,
}
