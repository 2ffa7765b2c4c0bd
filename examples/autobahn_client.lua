-- A client driver for the Autobahn|TestSuite fuzzing server (its client cases): for each
-- case, connect, echo every message back with its type, until the server closes.
--
--   AUTOBAHN_URL=ws://127.0.0.1:9001 AUTOBAHN_AGENT=lua lua5.4 examples/autobahn_client.lua
--
-- Also a small example of the client API: ws.connect, conn:recv, conn:send.
local ws = require("service_utils.WS.web_socket")

local base = assert(os.getenv("AUTOBAHN_URL"), "set AUTOBAHN_URL")
local agent = os.getenv("AUTOBAHN_AGENT") or "service_utils.WS"

local function open(path)
	local conn, err = ws.connect({ url = base .. path, hdrs = {}, external = true, max_message_size = 32 * 1024 * 1024 })
	if not conn then
		io.stderr:write(path, ": ", tostring(err), "\n")
	end
	return conn
end

local conn = assert(open("/getCaseCount"))
local count = tonumber(assert(conn:recv(10)).data)
conn:recv(10) -- the server closes

for i = 1, count do
	conn = open(("/runCase?case=%d&agent=%s"):format(i, agent))
	while conn do
		local msg = conn:recv(60)
		if not msg then
			break
		end
		conn:send(msg.data, { msg_type = msg.op_code == 2 and "BINARY" or "TEXT" })
	end
end

conn = open("/updateReports?agent=" .. agent)
if conn then
	conn:recv(10)
end
print(("ran %d cases"):format(count))
