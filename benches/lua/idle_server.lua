-- The idle-connection benchmarks' Lua server (benches/idle.sh, benches/idle_100k.py):
--   /echo     the README's echo handler (examples/handlers/echo.lua)
--   /all      a member: subscribes to the topic "all" when it opens
--   /publish  each message it gets is published to "all" (in every worker)
--   lua5.4 benches/lua/idle_server.lua [WORKERS [PING_INTERVAL [CERT KEY]]]
-- prints "listening on ws://127.0.0.1:PORT" (wss:// with CERT and KEY).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../../examples/?.lua;" .. package.path

local ws = require("service_utils.WS.web_socket")

local tls = arg[3] and { cert = arg[3], key = arg[4] } or nil
local server = ws.server({
	host = "127.0.0.1",
	port = 0,
	routes = { ["/echo"] = "handlers.echo", ["/all"] = "idle_member", ["/publish"] = "idle_publish" },
	workers = tonumber(arg[1] or "1"),
	ping_interval = tonumber(arg[2] or "30"),
	max_connections = 200000,
	tls = tls,
	log_level = "error",
})
print(("listening on %s://127.0.0.1:%d"):format(tls and "wss" or "ws", server.port))
io.stdout:flush()
server:run()
