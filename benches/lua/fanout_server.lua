-- The fan-out benchmark's Lua server (benches/fanout.sh): every message a connection sends
-- goes to every other connection on the same path.
--   /topic   through a topic: ws.publish, the frame encoded once (benches/lua/fanout_topic.lua)
--   /loop    through a Lua loop of try_send over a module table of members, as a handler
--            did before topics (benches/lua/fanout_loop.lua)
--   lua5.4 benches/lua/fanout_server.lua    prints "listening on ws://127.0.0.1:PORT"
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ws = require("service_utils.WS.web_socket")

local server = ws.server({
	port = 0,
	routes = { ["/topic"] = "fanout_topic", ["/loop"] = "fanout_loop" },
	max_connections = 30000,
	compression = false,
	log_level = "error",
})
print(("listening on ws://127.0.0.1:%d"):format(server.port))
io.stdout:flush()
server:run()
