-- The production server: wss, subprotocols, Origin, limits, liveness, backpressure,
-- graceful shutdown and stats, over real sockets.
local helper = require("spec.support.helper")
local ws = require("service_utils.WS.web_socket")
local OP = helper.OP

describe("wss server", function()
	local server, cert
	setup(function()
		local key
		cert, key = helper.certificate()
		server = helper.start_server({ tls_cert = cert, tls_key = key })
	end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("serves the module's own client over TLS", function()
		local conn = assert(ws.connect({ url = ("wss://127.0.0.1:%d/echo"):format(server.port), hdrs = {}, external = false, ca_file = cert }))
		conn:send("secret")
		assert.are.equal("secret", conn:recv(5).data)
		conn:close()
	end)

	it("echoes messages of 4 MiB to a client that reads late, and 300 pipelined small ones, over TLS in order", function()
		local conn = assert(ws.connect({ url = ("wss://127.0.0.1:%d/echo"):format(server.port), hdrs = {}, external = false, ca_file = cert }))
		local big = string.rep("0123456789abcdef", 4 * 65536)
		conn:send(big)
		require("socket").sleep(0.5) -- not reading: the server's socket fills, its writes wait
		local back = conn:recv(10)
		assert.are.equal(#big, #back.data)
		assert.is_true(back.data == big, "the 4 MiB came back changed")
		for i = 1, 300 do
			conn:send("small " .. i)
		end
		for i = 1, 300 do
			assert.are.equal("small " .. i, conn:recv(5).data)
		end
		conn:close()
	end)

	it("serves Python's websockets over TLS", function()
		helper.all_ok(helper.python("tls", server.port, cert), 1)
	end)

	it("logs a failed TLS handshake and keeps serving the others", function()
		local raw = helper.tcp(server.port)
		raw:send("GET /echo HTTP/1.1\r\n\r\n") -- plain HTTP on the TLS port
		assert.is_true(helper.closed_by_peer(raw))
		assert.is_true(helper.eventually(function() return helper.read_file(server.log):find("TLS handshake failed", 1, true) ~= nil end))
		local conn = assert(ws.connect({ url = ("wss://127.0.0.1:%d/echo"):format(server.port), hdrs = {}, external = false, ca_file = cert }))
		conn:close()
	end)

	it("runs beside a plain listener in the same process", function()
		package.path = "examples/?.lua;" .. package.path
		local key
		cert, key = helper.certificate()
		local plain = ws.server({ handler_base = "handlers" })
		local tls = ws.server({ handler_base = "handlers", tls = { cert = cert, key = key } })
		assert.is_true(tls.is_TLS)
		local a = assert(ws.connect({ url = ("ws://127.0.0.1:%d/echo"):format(plain.port), hdrs = {}, external = false }))
		local b = assert(ws.connect({ url = ("wss://127.0.0.1:%d/echo"):format(tls.port), hdrs = {}, external = false, ca_file = cert }))
		a:send("plain")
		b:send("tls")
		assert.are.same({ "plain", "tls" }, { a:recv(5).data, b:recv(5).data })
		a:close()
		b:close()
		plain:stop()
		tls:stop()
		plain:run()
		tls:run()
	end)

	it("takes PKCS#8, PKCS#1 RSA and SEC1 EC keys, and names what is wrong with a key or certificate", function()
		package.path = "examples/?.lua;" .. package.path
		local dir = helper.ARTIFACTS
		local ec_key, ec_cert = dir .. "/ec-key.pem", dir .. "/ec-cert.pem"
		assert(helper.exec_ok(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s "
			.. "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null"):format(ec_key, ec_cert)))
		local rsa_cert, rsa_pkcs8 = helper.certificate()
		local rsa_pkcs1, ec_sec1 = dir .. "/rsa-pkcs1.pem", dir .. "/ec-sec1.pem"
		assert(helper.exec_ok(("openssl rsa -in %s -out %s -traditional 2>/dev/null"):format(rsa_pkcs8, rsa_pkcs1)))
		assert(helper.exec_ok(("openssl ec -in %s -out %s 2>/dev/null"):format(ec_key, ec_sec1)))
		assert.matches("BEGIN RSA PRIVATE KEY", helper.read_file(rsa_pkcs1), 1, true)
		assert.matches("BEGIN EC PRIVATE KEY", helper.read_file(ec_sec1), 1, true)
		for _, pair in ipairs({ { rsa_cert, rsa_pkcs8 }, { rsa_cert, rsa_pkcs1 }, { ec_cert, ec_key }, { ec_cert, ec_sec1 } }) do
			local tls = ws.server({ handler_base = "handlers", tls = { cert = pair[1], key = pair[2] } })
			local conn = assert(ws.connect({ url = ("wss://127.0.0.1:%d/echo"):format(tls.port), hdrs = {}, external = false, ca_file = pair[1] }))
			conn:send(pair[2])
			assert.are.equal(pair[2], conn:recv(5).data)
			conn:close()
			tls:stop()
			tls:run()
		end
		local refused = {
			{ { cert = rsa_cert, key = ec_key }, "ws.server: tls.key does not match tls.cert" },
			{ { cert = rsa_pkcs8, key = rsa_pkcs8 }, "ws.server: tls.cert is not a PEM certificate" },
			{ { cert = rsa_cert, key = rsa_cert }, "ws.server: tls.key is not a PEM private key" },
			{ { cert = rsa_cert }, "ws.server: tls.key (a PEM file) is required" },
		}
		for _, c in ipairs(refused) do
			local ok, err = pcall(ws.server, { handler_base = "handlers", tls = c[1] })
			assert.is_false(ok)
			assert.matches(c[2], tostring(err), 1, true)
		end
	end)
end)

describe("subprotocols and Origin", function()
	local server
	setup(function() server = helper.start_server({ origins = "https://good.example,https://locked.example" }) end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("picks the handler's preferred subprotocol among those offered, exactly one header", function()
		local sock, res = helper.open(server.port, "/subproto", { ["Sec-WebSocket-Protocol"] = "chat.v1, chat.v2" })
		assert.are.equal("chat.v2", res.headers["sec-websocket-protocol"])
		assert.is_nil(res.head:find("chat.v1", 1, true))
		sock:send(helper.frame(OP.TEXT, "which"))
		assert.are.equal("chat.v2", helper.read_frame(sock).payload)
		sock:close()
		sock, res = helper.open(server.port, "/subproto", { ["Sec-WebSocket-Protocol"] = "chat.v1" })
		assert.are.equal("chat.v1", res.headers["sec-websocket-protocol"])
		sock:close()
	end)

	it("answers without the header when nothing matches", function()
		local sock, res = helper.open(server.port, "/subproto", { ["Sec-WebSocket-Protocol"] = "mqtt" })
		assert.is_nil(res.headers["sec-websocket-protocol"])
		sock:send(helper.frame(OP.TEXT, "which"))
		assert.are.equal("nil", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("refuses with 400 when the handler requires a subprotocol", function()
		local res = helper.request(server.port, "/subproto_strict", { ["Sec-WebSocket-Protocol"] = "chat.v1" })
		assert.are.equal(400, res.status)
		assert.are.equal('{"error_message":"No supported subprotocol: this endpoint speaks chat.v2"}', res.body)
	end)

	it("refuses an Origin outside the server's list with 403 before init", function()
		local res = helper.request(server.port, "/refuse", { Origin = "https://evil.example" })
		assert.are.equal(403, res.status)
		assert.are.equal('{"error_message":"Origin \'https://evil.example\' is not allowed"}', res.body)
		local sock = helper.open(server.port, "/echo", { Origin = "https://good.example" })
		sock:close()
		sock = helper.open(server.port, "/echo") -- no Origin: not a browser
		sock:close()
	end)

	it("applies a handler's own Origin list too", function()
		local res = helper.request(server.port, "/origin_locked", { Origin = "https://good.example" })
		assert.are.equal(403, res.status)
		assert.matches("is not allowed on handlers.origin_locked", res.body, 1, true)
		local sock = helper.open(server.port, "/origin_locked", { Origin = "https://locked.example" })
		sock:close()
	end)
end)

describe("limits", function()
	after_each(helper.stop_all)

	it("answers 503 beyond max_connections and serves again once one closes", function()
		local server = helper.start_server({ max_connections = 3 })
		local open = {}
		for i = 1, 3 do
			open[i] = helper.open(server.port, "/echo")
		end
		assert.are.equal(503, helper.request(server.port, "/echo").status)
		open[1]:send(helper.frame(OP.CLOSE, helper.close_payload(1000)))
		helper.read_close(open[1])
		open[1]:close()
		assert.is_true(helper.eventually(function()
			local res = helper.request(server.port, "/echo")
			return res ~= nil and res.status == 101
		end))
		server.stop()
	end)

	it("answers 431 to too many header lines", function()
		local server = helper.start_server({ max_headers = 8 })
		local headers = {}
		for i = 1, 10 do
			headers["X-H" .. i] = "v"
		end
		assert.are.equal(431, helper.request(server.port, "/echo", headers).status)
		server.stop()
	end)

	it("closes a frame over max_frame_size with 1009", function()
		local server = helper.start_server({ max_frame_size = 1000 })
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, string.rep("f", 1001)))
		assert.are.equal(1009, (helper.read_close(sock)))
		sock:close()
		server.stop()
	end)
end)

describe("liveness", function()
	after_each(helper.stop_all)

	it("pings a silent peer and closes with 1011 when no pong comes, telling the handler", function()
		local server = helper.start_server({ ping_interval = 0.3, pong_timeout = 0.3 })
		local sock = helper.open(server.port, "/events")
		local ping = helper.read_frame(sock)
		assert.are.equal(OP.PING, ping.opcode)
		local code, reason = helper.read_close(sock) -- never answered
		assert.are.same({ 1011, "keepalive timeout" }, { code, reason })
		sock:close()
		local probe = helper.open(server.port, "/events")
		probe:send(helper.frame(OP.TEXT, "report"))
		assert.matches("timeout:keepalive timeout", helper.read_frame(probe).payload, 1, true)
		probe:close()
		server.stop()
	end)

	it("keeps a quiet peer that answers pings: five keepalive rounds, then it still echoes", function()
		local server = helper.start_server({ ping_interval = 0.2, pong_timeout = 0.3 })
		local sock = helper.open(server.port, "/echo")
		-- Five pings answered span 1 s, over three pong_timeouts: a server that did not
		-- count the pongs would have closed by then (the next frame would be its close).
		for round = 1, 5 do
			local f = assert(helper.read_frame(sock))
			assert.are.equal(OP.PING, f.opcode, "round " .. round)
			assert(sock:send(helper.frame(OP.PONG, f.payload)))
		end
		assert(sock:send(helper.frame(OP.TEXT, "still here")))
		local f = assert(helper.read_frame(sock))
		while f.opcode == OP.PING do
			assert(sock:send(helper.frame(OP.PONG, f.payload)))
			f = assert(helper.read_frame(sock))
		end
		assert.are.same({ OP.TEXT, "still here" }, { f.opcode, f.payload })
		sock:close()
		server.stop()
	end)

	it("closes an idle connection with 1000 after idle_timeout", function()
		local server = helper.start_server({ idle_timeout = 0.3, ping_interval = 0 })
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.TEXT, "one"))
		assert.are.equal("one", helper.read_frame(sock).payload)
		local code, reason = helper.read_close(sock)
		assert.are.same({ 1000, "idle timeout" }, { code, reason })
		sock:close()
		server.stop()
	end)
end)

describe("backpressure", function()
	after_each(helper.stop_all)

	it("closes with 1008 and returns 'send timeout' when the peer does not read", function()
		local server = helper.start_server({ send_timeout = 0.5 })
		local sink = helper.open(server.port, "/slowsend")
		sink:send(helper.frame(OP.TEXT, "go"))
		assert.is_true(helper.eventually(function()
			return helper.read_file(server.log):find("slowsend: send returned nil, send timeout", 1, true) ~= nil
		end))
		-- What was queued arrives, then the close frame.
		local code = helper.read_close(sink)
		assert.are.equal(1008, code)
		sink:close()
		server.stop()
	end)

	it("broadcasts with try_send to everyone who reads while one member never reads", function()
		local server = helper.start_server()
		local stuck = helper.open(server.port, "/chat")
		local readers = {}
		for i = 1, 20 do
			readers[i] = helper.open(server.port, "/chat")
		end
		local block = string.rep("b", 65536)
		for n = 1, 160 do
			readers[1]:send(helper.frame(OP.BINARY, block))
			for i = 1, 20 do
				local f = helper.read_frame(readers[i])
				assert.are.equal(65536, #f.payload, ("reader %d, message %d"):format(i, n))
			end
		end
		-- The stuck member's queue stopped at send_buffer (1 MiB) and one message.
		local most = helper.stat(server, "max_queued")
		assert.is_true(most <= 1024 * 1024 + 65536 + 14, "a connection queued " .. most .. " bytes")
		stuck:close()
		for i = 1, 20 do
			readers[i]:close()
		end
		server.stop()
	end)
end)

describe("graceful shutdown", function()
	it("sends 1001 to each of 50 connections and runs handle_close for each", function()
		local server = helper.start_server()
		local conns = {}
		for i = 1, 50 do
			conns[i] = helper.open(server.port, "/events")
		end
		os.execute("kill -TERM " .. server.pid)
		for i = 1, 50 do
			assert.are.equal(1001, (helper.read_close(conns[i])), "connection " .. i)
			conns[i]:send(helper.frame(OP.CLOSE, helper.close_payload(1001)))
		end
		local out = server.stop()
		assert.matches("handle_close calls: 50", out, 1, true)
		helper.stop_all()
	end)
end)

describe("observability", function()
	after_each(helper.stop_all)

	it("counts connections, refusals, messages, bytes and protocol-error closes", function()
		local server = helper.start_server()
		assert.are.equal(400, helper.request(server.port, "/nosuch").status)
		local bad = helper.open(server.port, "/echo")
		bad:send(helper.frame(OP.TEXT, "x", { mask = false }))
		helper.read_close(bad)
		bad:close()
		local sock = helper.open(server.port, "/events")
		sock:send(helper.frame(OP.TEXT, "fields"))
		helper.read_frame(sock)
		assert.is_true(helper.eventually(function()
			sock:send(helper.frame(OP.TEXT, "stats"))
			local s = helper.read_frame(sock).payload
			return s:match("^open=1 accepted=2 rejected=1 r400=1 in=%d+ out=%d+ bytes_in=%d+ p1002=1$") ~= nil
		end))
		sock:close()
		server.stop()
	end)

	it("hands events to a log function at the chosen level", function()
		package.path = "examples/?.lua;" .. package.path
		local seen = {}
		local server = ws.server({ handler_base = "handlers", log_level = "info", log = function(level, message)
			seen[#seen + 1] = level .. " " .. message
		end })
		local conn = assert(ws.connect({ url = ("ws://127.0.0.1:%d/echo"):format(server.port), hdrs = {}, external = false }))
		conn:close()
		local refused = ws.connect({ url = ("ws://127.0.0.1:%d/"):format(server.port), hdrs = {}, external = false })
		assert.is_nil(refused)
		server:stop()
		server:run()
		local all = table.concat(seen, "\n")
		assert.matches("info [%d%.:]+: connection #1 open on /echo %(handlers%.echo%)", all)
		assert.matches("info [%d%.:]+: handshake refused %(400%)", all)
	end)
end)
