-- /pubsub: topics driven by text commands, each answered on the connection:
--   sub T / unsub T / topics          conn:subscribe(T), conn:unsubscribe(T), conn:topics()
--   pub T DATA / pubx T DATA          ws.publish(T, DATA) (pubx: excluding this connection)
--   spub T DATA                       server:publish(T, DATA) through the server object
--   flood T N SIZE                    publishes N messages of SIZE bytes to T, 2 ms apart
--   burst T N SIZE SPIN               publishes N messages of SIZE bytes to T at once (no
--                                     yield between them), lets the loop run 10 ms, then
--                                     keeps it busy in Lua for SPIN seconds: "burst
--                                     peak_queued=<the most stats().pubsub.queued_bytes
--                                     seen after a publish>"
--   churn N                           N subscribe/unsubscribe pairs, each on a new topic,
--                                     at once: "churned pending=<pending_subscriptions>"
--   stats                             "published=<n> dropped=<n> max_queued=<n>"
--   worker                            "worker <this process's worker> of <workers>"
--   accepted                          "accepted <stats().handshakes_accepted, all workers>"
--   open                              "open <stats().open_connections, all workers>"
--   pid                               "pid <this process's id>"
--   init                              "init <whether handlers.worker_init was required here>"
--   redis                             "sent=<n> received=<n> dropped=<n> connected=<bool>
--                                     queued=<queued_bytes> max=<max_queued_bytes>
--                                     pending=<pending_subscriptions> channels=<n>"
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
	elseif cmd == "burst" then
		local n, size, spin = rest:match("^(%d+) (%d+) ([%d.]+)$")
		local payload, peak = ("b"):rep(tonumber(size)), 0
		for _ = 1, tonumber(n) do
			ws.publish(topic, payload, { msg_type = "BINARY" })
			peak = math.max(peak, server():stats().pubsub.queued_bytes)
		end
		ws.sleep(0.01)
		local until_ = os.clock() + tonumber(spin)
		while os.clock() < until_ do end -- luacheck: ignore (busy on purpose)
		conn:send("burst peak_queued=" .. peak)
	elseif cmd == "churn" then
		for i = 1, tonumber(topic) do
			local t = "churn" .. i
			conn:subscribe(t)
			conn:unsubscribe(t)
		end
		conn:send("churned pending=" .. server():stats().pubsub.pending_subscriptions)
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
		conn:send(("sent=%d received=%d dropped=%d connected=%s queued=%d max=%d pending=%d channels=%d"):format(
			p.sent, p.received, p.dropped, tostring(p.connected), p.queued_bytes, p.max_queued_bytes,
			p.pending_subscriptions, p.channels))
	elseif cmd == "stats" then
		local s = server():stats()
		conn:send(("published=%d dropped=%d max_queued=%d"):format(s.published, s.publish_dropped, s.max_queued_bytes))
	end
end

return H
