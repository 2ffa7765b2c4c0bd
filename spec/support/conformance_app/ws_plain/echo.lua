-- /ws_plain/echo: a handler class shaped like those written for the original module — it
-- defines handle_message and nothing else (no init, handle_open, handle_ping or
-- handle_close) — serving the same commands as /ws_spec/echo. The conformance table runs
-- its wire cases against both: what the library sends (pong, close replies, protocol
-- errors' close frames) must not depend on the hooks a class defines.
return { handle_message = require("ws_spec.echo").handle_message }
