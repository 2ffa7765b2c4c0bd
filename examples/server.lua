-- Example server: an echo handler at /echo, a chat room at /chat, and the chat page
-- (examples/public/index.html) for a browser at http://127.0.0.1:PORT/.
--
--   lua5.4 examples/server.lua [PORT]     (PORT defaults to 8080; 0 picks a free one)
--
-- with the built module on package.cpath (the README's first command does both).
-- Handler classes live under the namespace "handlers" (examples/handlers/*.lua), so a
-- client can reach those modules and nothing else.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ws = require("service_utils.WS.web_socket")

local port = tonumber(arg[1] or "8080")
if port == nil then
	io.stderr:write("usage: lua5.4 examples/server.lua [PORT]\n")
	os.exit(2)
end

local server = ws.server({ host = "127.0.0.1", port = port, handler_base = "handlers", static = here .. "/public" })
print(("listening on ws://%s:%d"):format(server.host, server.port))
io.stdout:flush()
server:run() -- until Ctrl-C / SIGTERM: every open connection then gets close 1001
