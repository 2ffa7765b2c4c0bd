-- /pubsub: topics driven by text commands, each answered on the connection:
--   sub T / unsub T / topics          conn:subscribe(T), conn:unsubscribe(T), conn:topics()
--   pub T DATA / pubx T DATA          ws.publish(T, DATA) (pubx: excluding this connection)
--   spub T DATA                       server:publish(T, DATA) through the server object
--   flood T N SIZE                    publishes N messages of SIZE bytes to T, 2 ms apart
--   stats                             "published=<n> dropped=<n> max_queued=<n>"
--   worker                            "worker <this process's worker> of <workers>"
--   accepted                          "accepted <stats().handshakes_accepted, all workers>"
--   open                              "open <stats().open_connections, all workers>"
--   pid                               "pid <this process's id>"
--   init                              "init <whether handlers.worker_init was required here>"
--   redis                             "sent=<n> received=<n> dropped=<n> connected=<bool>"
local ws = require("service_utils.WS.web_socket")

local H = {}

local function server()
	return require("spec_server").server
end

function H.handle_message(msg)
	local conn = msg.conn
	local cmd, topic, rest = msg.data:match("^(%S+) ?(%S*) ?(.*)$")
	if cmd == "sub" then
		local ok, err, kind = conn:subscribe(topic)
		conn:send(ok and ("subscribed " .. topic) or (err .. " (" .. kind .. ")"))
	elseif cmd == "unsub" then
		conn:send("unsubscribed " .. tostring(conn:unsubscribe(topic)))
	elseif cmd == "topics" then
		conn:send("topics " .. table.concat(conn:topics(), ","))
	elseif cmd == "pub" or cmd == "pubx" then
		local n = ws.publish(topic, rest, cmd == "pubx" and { exclude = conn } or nil)
		conn:send("published " .. n)
	elseif cmd == "spub" then
		conn:send("published " .. server():publish(topic, rest))
	elseif cmd == "flood" then
		local n, size = rest:match("^(%d+) (%d+)$")
		local payload = ("f"):rep(tonumber(size))
		for _ = 1, tonumber(n) do
			ws.publish(topic, payload, { msg_type = "BINARY" })
			ws.sleep(0.002) -- the writers run: a subscriber that reads keeps up
		end
		conn:send("flooded")
	elseif cmd == "worker" then
		conn:send(("worker %d of %d"):format(server().worker, server().workers))
	elseif cmd == "init" then
		conn:send("init " .. tostring(package.loaded["handlers.worker_init"] ~= nil))
	elseif cmd == "open" then
		conn:send("open " .. server():stats().open_connections)
	elseif cmd == "pid" then
		local stat = assert(io.open("/proc/self/stat"))
		conn:send("pid " .. stat:read("*l"):match("^%d+"))
		stat:close()
	elseif cmd == "accepted" then
		conn:send("accepted " .. server():stats().handshakes_accepted)
	elseif cmd == "redis" then
		local p = server():stats().pubsub
		conn:send(("sent=%d received=%d dropped=%d connected=%s"):format(p.sent, p.received, p.dropped, tostring(p.connected)))
	elseif cmd == "stats" then
		local s = server():stats()
		conn:send(("published=%d dropped=%d max_queued=%d"):format(s.published, s.publish_dropped, s.max_queued_bytes))
	end
end

return H
