-- The opening handshake over real sockets: what is accepted, and the exact answer to
-- every refusal.
local helper = require("spec.support.helper")

describe("handshake", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	local function refusal(res, message)
		local json = '{"error_message":"' .. message .. '"}'
		assert.are.equal(400, res.status)
		assert.are.equal(json, res.headers["x-msg"])
		assert.are.equal("application/json", res.headers["content-type"])
		assert.are.equal(json, res.body)
	end

	it("answers 101 with the RFC 6455 accept key", function()
		local sock, res = helper.open(server.port, "/echo")
		assert.are.equal("websocket", res.headers["upgrade"])
		assert.are.equal("Upgrade", res.headers["connection"])
		assert.are.equal(helper.ACCEPT, res.headers["sec-websocket-accept"])
		assert.matches("^HTTP/1%.1 101 Switching Protocols\r\n", res.head)
		sock:close()
	end)

	it("matches header names in any case and accepts a Connection token list", function()
		local raw = "GET /echo HTTP/1.1\r\nhost: x\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n" ..
			"sec-websocket-key: " .. helper.KEY .. "\r\nsec-websocket-VERSION: 13\r\n\r\n"
		assert.are.equal(101, helper.raw_request(server.port, raw).status)
	end)

	it("refuses a missing version with the original message", function()
		refusal(helper.request(server.port, "/echo", { ["Sec-WebSocket-Version"] = false }),
			"Missing Sec-WebSocket-Version in handshake request")
	end)

	it("refuses versions other than 13 and advertises 13", function()
		local res = helper.request(server.port, "/echo", { ["Sec-WebSocket-Version"] = "8" })
		refusal(res, "Unsupported WebSocket version requested")
		assert.are.equal("13", res.headers["sec-websocket-version"])
	end)

	it("refuses a missing key with the original message", function()
		refusal(helper.request(server.port, "/echo", { ["Sec-WebSocket-Key"] = false }),
			"Missing Sec-WebSocket-Key in handshake request")
	end)

	it("refuses a key that is not 16 bytes of base64", function()
		refusal(helper.request(server.port, "/echo", { ["Sec-WebSocket-Key"] = "c2hvcnQ=" }),
			"Malformed Sec-WebSocket-Key in handshake request: must be 16 bytes in base64")
	end)

	it("refuses an empty path with the original message", function()
		refusal(helper.request(server.port, "/"), "Path empty: Unable to deduce message handler")
		refusal(helper.request(server.port, "/?a=b"), "Path empty: Unable to deduce message handler")
	end)

	it("refuses path segments that are not identifiers before requiring anything", function()
		for _, path in ipairs({ "/..", "/a.b", "/%2e%2e/x", "/os-exit", "/deep//nested" }) do
			local res = helper.request(server.port, path)
			assert.are.equal(400, res.status, path)
			assert.matches("Invalid path segment", res.body, 1, true)
		end
	end)

	it("routes /a/b to the module a.b under the base namespace", function()
		local sock = helper.open(server.port, "/deep/nested?ignored=1")
		sock:send(helper.frame(helper.OP.TEXT, "who"))
		assert.are.equal("handlers.deep.nested", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("refuses a module that does not exist", function()
		refusal(helper.request(server.port, "/nosuch"), "WebSocket handler module 'handlers.nosuch' not found")
	end)

	it("refuses a module that fails to load, and logs why", function()
		refusal(helper.request(server.port, "/broken"), "WebSocket handler module 'handlers.broken' failed to load")
		assert.is_true(helper.eventually(function() return helper.read_file(server.log):find("broken at load time", 1, true) ~= nil end))
	end)

	it("refuses a module without handle_message", function()
		refusal(helper.request(server.port, "/nomsg"), "WebSocket handler module 'handlers.nomsg' has no handle_message function")
	end)

	it("refuses with init's message when init returns false", function()
		refusal(helper.request(server.port, "/refuse"), "go away, 127.0.0.1")
	end)

	it("answers 500 when init raises an error, and logs it", function()
		local res = helper.request(server.port, "/initboom")
		assert.are.equal(500, res.status)
		assert.are.equal('{"error_message":"Internal error while accepting the WebSocket handshake"}', res.body)
		assert.is_true(helper.eventually(function() return helper.read_file(server.log):find("init exploded", 1, true) ~= nil end))
	end)

	it("lets init add response headers and read the request through uc", function()
		local sock, res = helper.open(server.port, "/proto?room=1", { ["User-Agent"] = "spec-agent" })
		assert.are.equal("chat.v1", res.headers["sec-websocket-protocol"])
		assert.matches("^127%.0%.0%.1:%d+$", res.headers["x-uc-peer"])
		assert.are.equal("spec-agent|spec-agent", res.headers["x-uc-agent"])
		assert.are.equal("spec-agent", res.headers["x-req-agent"])
		assert.are.equal("room=1", res.headers["x-uc-query"])
		sock:close()
	end)

	it("refuses a request without Host (RFC 6455 §4.2.1)", function()
		refusal(helper.request(server.port, "/echo", { Host = false }), "Missing Host header in handshake request")
	end)

	it("refuses an HTTP/1.0 Upgrade request: the Upgrade needs HTTP/1.1", function()
		local raw = helper.upgrade_request("/echo"):gsub("^GET /echo HTTP/1%.1", "GET /echo HTTP/1.0")
		refusal(helper.raw_request(server.port, raw), "WebSocket handshake request must use HTTP/1.1 or later")
	end)

	it("routes an absolute-form target (RFC 9112 §3.2.2) by its path", function()
		local sock = helper.tcp(server.port)
		sock:send((helper.upgrade_request("/deep/nested"):gsub("^GET /deep/nested", "GET http://127.0.0.1:" .. server.port .. "/deep/nested")))
		assert.are.equal(101, helper.read_response(sock).status)
		sock:send(helper.frame(helper.OP.TEXT, "who"))
		assert.are.equal("handlers.deep.nested", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("answers a plain HTTP request with 426", function()
		assert.are.equal(426, helper.raw_request(server.port, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").status)
	end)

	it("answers an oversized request head with 431", function()
		local res = helper.request(server.port, "/echo", { ["X-Big"] = string.rep("a", 9000) })
		assert.are.equal(431, res.status)
	end)

	it("answers a request that is not HTTP with 400", function()
		assert.are.equal(400, helper.raw_request(server.port, "\1\2\3 nonsense\r\n\r\n").status)
	end)

	it("handles frames sent in the same packet as the request", function()
		local sock = helper.tcp(server.port)
		sock:send(helper.upgrade_request("/echo") .. helper.frame(helper.OP.TEXT, "pipelined"))
		assert.are.equal(101, helper.read_response(sock).status)
		assert.are.equal("pipelined", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("keeps serving after refusing malformed, oversized and unroutable requests", function()
		helper.raw_request(server.port, "\1\2\3 nonsense\r\n\r\n")
		helper.request(server.port, "/echo", { ["X-Big"] = string.rep("a", 9000) })
		helper.request(server.port, "/..")
		assert.is_true(server.alive())
		assert.is_true(helper.echoes(server.port))
	end)
end)

describe("handshake on a server with routes and no handler_base", function()
	local server
	setup(function() server = helper.start_server({ handler_base = "none", routes = "/talk@handlers.deep.nested" }) end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("serves exactly the routed paths", function()
		local sock = helper.open(server.port, "/talk?x=1")
		sock:send(helper.frame(helper.OP.TEXT, "who"))
		assert.are.equal("handlers.deep.nested", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("answers 404 for any other path, loading nothing", function()
		for _, path in ipairs({ "/deep/nested", "/socket", "/talk/more", "/" }) do
			local res = helper.request(server.port, path)
			assert.are.equal(404, res.status, path)
			assert.are.equal('{"error_message":"No WebSocket endpoint at \'' .. path .. '\'"}', res.body)
		end
	end)
end)
