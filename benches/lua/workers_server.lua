-- The workers benchmark's server (benches/workers.sh): the example's echo handler at /echo,
-- served by N worker processes.
--   lua5.4 benches/lua/workers_server.lua N    prints "listening on ws://127.0.0.1:PORT"
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../../examples/?.lua;" .. package.path

local ws = require("service_utils.WS.web_socket")

local server = ws.server({
	port = 0,
	routes = { ["/echo"] = "handlers.echo" },
	workers = tonumber(arg[1] or "1"),
	max_connections = 30000,
	log_level = "error",
})
if server.worker == 1 then
	print(("listening on ws://127.0.0.1:%d"):format(server.port))
	io.stdout:flush()
end
server:run()
