-- The client (ws.connect and the connection object) against the module's own server,
-- Python's websockets, Node's ws, TLS, and servers that answer wrongly.
local helper = require("spec.support.helper")
package.path = "spec/support/?.lua;" .. package.path -- for msg_handler = "handlers.collector"
local ws = require("service_utils.WS.web_socket")
local ws_util = require("service_utils.WS.ws_util")

local connect = helper.connect

-- The exchanges every peer must pass.
local function conversation(url)
	local conn, status, headers = connect(url)
	assert(conn, status)
	assert.are.equal(101, status)
	assert.is_string(headers["sec-websocket-accept"])
	assert.are.equal(headers["sec-websocket-accept"], headers["Sec-WebSocket-Accept"])
	for _, n in ipairs({ 0, 125, 126, 65535, 65536, 8 * 1024 * 1024 }) do
		for _, kind in ipairs({ "TEXT", "BINARY" }) do
			local payload = string.rep(kind == "TEXT" and "t" or "\0", n)
			assert(conn:send(payload, { msg_type = kind }))
			local msg = assert(conn:recv(10))
			assert.are.equal(kind == "TEXT" and 1 or 2, msg.op_code, kind .. " " .. n)
			assert.are.equal(n, msg.payload_len)
			assert.is_true(msg.data == payload, kind .. " " .. n)
		end
	end
	return conn
end

local function peer_commands(conn)
	-- fragmented message from the peer
	assert(conn:send("!frag"))
	assert.are.equal("fragmented", conn:recv(5).data)
	-- the peer's ping is answered by the library
	assert(conn:send("!ping"))
	assert.are.equal("pong:srv", conn:recv(5).data)
	-- the peer closes with a code: recv reports it
	assert(conn:send("!close 4001 bye now"))
	local msg, why, code, reason = conn:recv(5)
	assert.are.same({ nil, "closed", 4001, "bye now" }, { msg, why, code, reason })
	assert.is_false(conn:is_open())
end

describe("ws.connect against the module's own server", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("exchanges text and binary of every size from 0 B to 8 MiB", function()
		local conn = conversation(("ws://127.0.0.1:%d/echo"):format(server.port))
		assert(conn:close())
	end)

	it("exposes the original connection fields", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		assert.are.same({ "127.0.0.1", server.port, false }, { conn.host, conn.port, conn.is_TLS })
		assert.are.equal(conn, conn.ss)
		assert.is_nil(conn.msg_handler)
		conn:close()
	end)

	it("sends the path and the query and does not modify its inputs", function()
		local hdrs = { ["User-Agent"] = "client-spec" }
		local inputs = { url = ("ws://127.0.0.1:%d/proto?room=7"):format(server.port), hdrs = hdrs, external = true }
		local conn, status, headers = ws.connect(inputs)
		assert.are.equal(101, status)
		assert.are.equal("room=7", headers["x-uc-query"])
		assert.are.equal("client-spec", headers["x-req-agent"])
		assert.are.same({ ["User-Agent"] = "client-spec" }, hdrs)
		assert.are.same({ "url", "hdrs", "external" }, (function()
			local keys = {}
			for k in pairs(inputs) do keys[#keys + 1] = k end
			table.sort(keys, function(a, b) return ({ url = 1, hdrs = 2, external = 3 })[a] < ({ url = 1, hdrs = 2, external = 3 })[b] end)
			return keys
		end)())
		conn:close()
	end)

	it("returns the server's X-msg when the upgrade is refused, of kind handshake", function()
		local conn, msg, kind = connect(("ws://127.0.0.1:%d/nosuch"):format(server.port))
		assert.is_nil(conn)
		assert.are.equal('{"error_message":"WebSocket handler module \'handlers.nosuch\' not found"}', msg)
		assert.are.equal("handshake", kind)
	end)

	it("raises for a msg_type other than TEXT or BINARY, naming it; try_send too", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		local ok, err = pcall(conn.send, conn, "x", { msg_type = "PING" })
		assert.is_false(ok)
		assert.matches('send: msg_type must be "TEXT" or "BINARY", got "PING"', tostring(err), 1, true)
		ok, err = pcall(conn.try_send, conn, "x", { msg_type = 3 })
		assert.is_false(ok)
		assert.matches('try_send: msg_type must be "TEXT" or "BINARY", got "3"', tostring(err), 1, true)
		assert.are.equal(true, conn:send("still usable"))
		assert.are.equal("still usable", conn:recv(5).data)
		conn:close()
	end)

	it("honours inputs.max_frame_size apart from max_message_size: a longer frame ends the connection", function()
		local conn = assert(ws.connect({ url = ("ws://127.0.0.1:%d/echo"):format(server.port), hdrs = {}, external = false, timeout = 5,
			max_frame_size = 100 }))
		assert(conn:send(("x"):rep(100)))
		assert.are.equal(100, assert(conn:recv(5)).payload_len)
		assert(conn:send(("x"):rep(101)))
		local msg, why, _, reason = conn:recv(5)
		assert.are.same({ nil, "closed", "frame larger than the configured maximum" }, { msg, why, reason })
	end)

	it("sends inputs.credentials as Basic authorization (RFC 7617), unless hdrs has an Authorization", function()
		local url = ("ws://127.0.0.1:%d/proto"):format(server.port)
		local conn, _, h = assert(connect(url, { credentials = { username = "user", password = "pass" } }))
		assert.are.equal("Basic dXNlcjpwYXNz", h["X-Uc-Authorization"])
		conn:close()
		conn, _, h = assert(connect(url, { hdrs = { Authorization = "Bearer t" }, credentials = { username = "user", password = "pass" } }))
		assert.are.equal("Bearer t", h["X-Uc-Authorization"])
		conn:close()
	end)

	it("honours inputs.idle_timeout: closes with 1000 after no data message (recv reports the peer's answering 1000)", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port), { idle_timeout = 0.3 }))
		assert(conn:send("one"))
		assert.are.equal("one", assert(conn:recv(5)).data)
		local msg, why, code, reason = conn:recv(5)
		assert.are.same({ nil, "closed", 1000, "" }, { msg, why, code, reason })
	end)

	it("times out a recv without closing the connection", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		assert.are.same({ nil, "timeout" }, { conn:recv(0.1) })
		assert.is_true(conn:is_open())
		conn:send("after the timeout")
		assert.are.equal("after the timeout", conn:recv(5).data)
		conn:close()
	end)

	it("closes with a full handshake: the server sees the code", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/events"):format(server.port)))
		assert(conn:close(4002, "client done"))
		assert.is_false(conn:is_open())
		local msg, why, code = conn:recv(1)
		assert.are.same({ nil, "closed", 4002 }, { msg, why, code })
		local probe = assert(connect(("ws://127.0.0.1:%d/events"):format(server.port)))
		probe:send("report")
		assert.matches("4002:client done", probe:recv(5).data, 1, true)
		probe:close()
	end)

	it("works through the original ws_util function forms", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		assert(ws_util.send_msg(conn, "\0binary\0"))
		local msg = ws_util.recv_frame(conn)
		assert.are.same({ 2, "\0binary\0" }, { msg.op_code, msg.data }) -- binary by default, as the original
		assert(ws_util.send_msg(conn, "text", { msg_type = "TEXT" }))
		assert.are.equal(1, ws_util.recv_frame(conn).op_code)
		assert(ws_util.ping(conn, "p"))
		assert(ws_util.close(conn))
		assert.is_false(conn:is_open())
	end)

	it("masks every frame it sends, each with a fresh mask (seen on the wire)", function()
		local recorder = helper.start_python("bad", "masks")
		local conn = assert(connect(("ws://127.0.0.1:%d/"):format(recorder.port)))
		for _ = 1, 20 do
			conn:send("same")
		end
		assert.are.equal(string.rep("1", 20) .. " 20", conn:recv(5).data)
		recorder.stop()
	end)

	it("delivers to a msg_handler and refuses recv on such a connection", function()
		local collector = require("handlers.collector")
		local conn, status = connect(("ws://127.0.0.1:%d/echo"):format(server.port), { msg_handler = "handlers.collector" })
		assert.are.equal(101, status)
		assert.are.equal("handlers.collector", conn.msg_handler)
		assert.has_error(function() conn:recv(0.1) end)
		local ok, err = pcall(ws_util.recv_frame, conn)
		assert.is_false(ok)
		assert.matches("Cannot invoke ws_util.recv_frame when message_handler is set for the websocket", tostring(err), 1, true)
		conn:send("one")
		conn:send("reply")
		assert.is_true(helper.eventually(function()
			ws.sleep(0.02) -- the loop runs while the main chunk waits
			return collector.seen[1] == "one" and collector.seen[2] == "reply" and collector.seen[3] == "replied from the handler"
		end), table.concat(collector.seen, ","))
		conn:close()
	end)

	it("connects, sends and receives from inside a server handler without blocking others", function()
		local via = assert(connect(("ws://127.0.0.1:%d/relay"):format(server.port)))
		local other = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		via:send(("ws://127.0.0.1:%d/sleepy 0.5"):format(server.port)) -- the relay waits on /sleepy...
		other:send("meanwhile")
		assert.are.equal("meanwhile", other:recv(5).data) -- ...while others are served
		assert.are.same({ nil, "timeout" }, { via:recv(0.1) })
		assert.are.equal("via relay: slept", assert(via:recv(5)).data)
		via:close()
		other:close()
	end)

	it("hands out pooled connections in turn, leaving them pooled (as the original), and drops closed ones", function()
		local a = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		local b = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		local c = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		for _, conn in ipairs({ a, b, c }) do
			ws_util.add_ws_to_pool(conn, "spec-pool")
		end
		assert.are.same({ a, b, c, a }, { ws_util.get_ws_from_pool("spec-pool"), ws_util.get_ws_from_pool("spec-pool"),
			ws_util.get_ws_from_pool("spec-pool"), ws_util.get_ws_from_pool("spec-pool") })
		b:close()
		assert.are.same({ c, a, c }, { ws_util.get_ws_from_pool("spec-pool"), ws_util.get_ws_from_pool("spec-pool"),
			ws_util.get_ws_from_pool("spec-pool") })
		a:close()
		c:close()
		assert.is_nil(ws_util.get_ws_from_pool("spec-pool"))
		assert.is_nil(ws_util.get_ws_from_pool("no-such-pool"))
	end)
end)

describe("ws.connect against Python's websockets", function()
	local server
	setup(function() server = helper.start_python("echo") end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("exchanges every size, gets fragments, pings and close codes from the peer", function()
		peer_commands(conversation(("ws://127.0.0.1:%d/"):format(server.port)))
	end)

	it("reports a server that drops the connection abruptly", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/"):format(server.port)))
		conn:send("!abort")
		local msg, why, code = conn:recv(5)
		assert.are.same({ nil, "closed", 1006 }, { msg, why, code })
	end)
end)

describe("ws.connect against Node's ws", function()
	local server
	setup(function() server = helper.start_node() end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("exchanges every size, gets fragments, pings and close codes from the peer", function()
		peer_commands(conversation(("http://127.0.0.1:%d/any/path"):format(server.port)))
	end)

	it("reports a server that drops the connection abruptly", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/"):format(server.port)))
		conn:send("!abort")
		local _, why, code = conn:recv(5)
		assert.are.same({ "closed", 1006 }, { why, code })
	end)
end)

describe("ws.connect over TLS (wss)", function()
	local server, cert
	setup(function()
		local key
		cert, key = helper.certificate()
		server = helper.start_python("tls", cert, key)
	end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("verifies the server against a trusted CA file and talks", function()
		local conn, status = connect(("wss://127.0.0.1:%d/"):format(server.port), { ca_file = cert })
		assert(conn, status)
		assert.is_true(conn.is_TLS)
		conn:send("over tls")
		assert.are.equal("over tls", conn:recv(5).data)
		conn:send(string.rep("x", 100000), { msg_type = "BINARY" })
		assert.are.equal(100000, #conn:recv(5).data)
		conn:close()
	end)

	it("refuses a certificate it cannot verify, saying so (kind tls)", function()
		local conn, msg, kind = connect(("wss://127.0.0.1:%d/"):format(server.port))
		assert.is_nil(conn)
		assert.matches("^connect: TLS handshake with 127%.0%.0%.1:%d+ failed", msg)
		assert.are.equal("tls", kind)
	end)

	it("connects without verification only when told to", function()
		local conn = assert(connect(("wss://127.0.0.1:%d/"):format(server.port), { verify = false }))
		conn:send("unverified")
		assert.are.equal("unverified", conn:recv(5).data)
		conn:close()
	end)

	it("uses TLS for ws:// when secure = true", function()
		local conn = assert(connect(("ws://127.0.0.1:%d/"):format(server.port), { secure = true, ca_file = cert }))
		assert.is_true(conn.is_TLS)
		conn:close()
	end)
end)

describe("ws.connect against servers that answer wrongly", function()
	after_each(helper.stop_all)

	for mode, message in pairs({
		["no-connection"] = "No Connection: Upgrade header in handshake response",
		["no-upgrade"] = "No Upgrade: websocket header in handshake response",
		["no-accept"] = "Invalid or missing Sec-WebSocket-Accept header in handshake response",
		["wrong-accept"] = "Invalid or missing Sec-WebSocket-Accept header in handshake response",
		["status-xmsg"] = '{"error_message":"nope"}',
		["status"] = "connect: server answered 404 Not Found",
	}) do
		it("returns nil, '" .. message .. "', 'handshake' for a " .. mode .. " answer", function()
			local server = helper.start_python("bad", mode)
			local conn, msg, kind = connect(("ws://127.0.0.1:%d/x"):format(server.port))
			assert.is_nil(conn)
			assert.are.same({ message, "handshake" }, { msg, kind })
		end)
	end

	it("closes with 1002 when the server masks a frame, and delivers nothing of it", function()
		local server = helper.start_python("bad", "masked")
		local conn = assert(connect(("ws://127.0.0.1:%d/x"):format(server.port), { close_timeout = 0.3 }))
		local msg, why = conn:recv(5)
		assert.are.same({ nil, "closed" }, { msg, why })
		-- the server prints each frame it reads: the first is our close (read, not raced)
		assert.are.equal("frame 8 1002", server.out:read("*l"))
		server.stop()
	end)

	it("keeps alive with pings and closes with 1011 when no pong comes", function()
		local server = helper.start_python("bad", "mute")
		local conn = assert(connect(("ws://127.0.0.1:%d/x"):format(server.port), { ping_interval = 0.2, pong_timeout = 0.3, close_timeout = 0.3 }))
		local msg, why = conn:recv(5)
		assert.are.same({ nil, "closed" }, { msg, why })
		local seen = server.stop()
		assert.matches("frame 9", seen, 1, true) -- the ping
		assert.matches("frame 8 1011", seen, 1, true) -- the close it answered with
	end)

	it("gives up a send to a server that stops reading: nil, 'send timeout', 'timeout'", function()
		local server = helper.start_python("bad", "deaf")
		local conn = assert(connect(("ws://127.0.0.1:%d/x"):format(server.port), { send_timeout = 0.3, send_buffer = 65536 }))
		local block = string.rep("d", 1024 * 1024)
		local ok, err, kind
		for _ = 1, 64 do -- far more than the socket buffers hold
			ok, err, kind = conn:send(block, { msg_type = "BINARY" })
			if not ok then
				break
			end
		end
		assert.are.same({ nil, "send timeout", "timeout" }, { ok, err, kind })
		assert.is_false(conn:is_open())
		assert.are.same({ nil, "send: connection is closing", "closing" }, { conn:send("late") })
		server.stop()
	end)

	it("times out against a server that never answers, saying where", function()
		local server = helper.start_python("bad", "silent")
		local conn, msg, kind = connect(("ws://127.0.0.1:%d/x"):format(server.port), { timeout = 0.5 })
		assert.is_nil(conn)
		assert.are.equal(("connect: timed out after 0.5 s connecting to 127.0.0.1:%d"):format(server.port), msg)
		assert.are.equal("timeout", kind)
	end)
end)

describe("ws.connect inputs", function()
	it("returns nil, a message and 'refused' for a refused connection", function()
		local conn, msg, kind = connect("ws://127.0.0.1:1/")
		assert.is_nil(conn)
		assert.matches("^connect: cannot connect to 127%.0%.0%.1:1: ", msg)
		assert.are.equal("refused", kind)
	end)

	it("returns nil, a message and 'dns' for a host that does not resolve", function()
		local conn, msg, kind = connect("ws://no-such-host.invalid/")
		assert.is_nil(conn)
		assert.matches("^connect: cannot resolve host 'no%-such%-host%.invalid'", msg)
		assert.are.equal("dns", kind)
	end)

	it("raises an error naming a missing or mistyped input", function()
		local cases = {
			{ {}, "connect: inputs.url must be a string (it is required), got nil" },
			{ { url = 1, hdrs = {}, external = true }, "connect: inputs.url must be a string, got 1" },
			{ { url = "ws://h/" , external = true }, "connect: inputs.hdrs must be a table (it is required), got nil" },
			{ { url = "ws://h/", hdrs = {} }, "connect: inputs.external must be a boolean (it is required), got nil" },
			{ { url = "ws://h/", hdrs = {}, external = true, timeout = "x" }, "connect: inputs.timeout must be a number of seconds >= 0, got 'x'" },
			{ { url = "ws://h/", hdrs = {}, external = true, timeout = -1 }, "connect: inputs.timeout must be a number of seconds >= 0, got -1" },
			{ { url = "ws://h/", hdrs = {}, external = true, msg_handler = 3 }, "connect: inputs.msg_handler must be a string, got 3" },
			{ { url = "ws://h/", hdrs = {}, external = true, max_message_size = -1 },
				"connect: inputs.max_message_size must be a whole number from 1 to 1099511627776, got -1" },
			{ { url = "ws://h/", hdrs = {}, external = true, send_buffer = 0.5 },
				"connect: inputs.send_buffer must be a whole number from 1 to 1099511627776, got 0.5" },
			{ { url = "ws://h/", hdrs = {}, external = true, max_frame_size = 0 },
				"connect: inputs.max_frame_size must be a whole number from 1 to 1099511627776, got 0" },
			{ { url = "ftp://h/", hdrs = {}, external = true }, "connect: url scheme 'ftp' is not ws, wss, http or https" },
			{ { url = "ws://h/", hdrs = {}, external = true, retries = 3 }, "connect: inputs.retries is not an input of ws.connect" },
			{ { url = "ws://h/", hdrs = {}, external = true, [1] = "x" }, "connect: inputs.[integer] is not an input of ws.connect" },
		}
		for _, c in ipairs(cases) do
			local ok, err = pcall(ws.connect, c[1])
			assert.is_false(ok)
			assert.matches(c[2], tostring(err), 1, true)
		end
	end)
end)

describe("one Lua state with a server and a client", function()
	it("keeps its connections when the module is required again and the old one collected", function()
		package.path = "examples/?.lua;" .. package.path
		local server = ws.server({ handler_base = "handlers" })
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		package.loaded["service_utils.WS.web_socket"] = nil
		local again = require("service_utils.WS.web_socket")
		assert.are_not.equal(ws, again)
		collectgarbage("collect")
		collectgarbage("collect")
		conn:send("still connected")
		local msg, why = conn:recv(5)
		assert.are.equal("still connected", msg and msg.data, why)
		assert(conn:close())
		server:stop()
		assert.is_true(server:run())
	end)

	it("serves its own server while the main chunk waits in the client's calls", function()
		package.path = "examples/?.lua;" .. package.path
		local server = ws.server({ handler_base = "handlers" })
		local conn = assert(connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		conn:send("to myself")
		assert.are.equal("to myself", conn:recv(5).data)
		assert(conn:close())
		server:stop()
		assert.is_true(server:run())
	end)
end)
