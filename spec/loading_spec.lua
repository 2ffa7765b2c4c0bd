-- Loading the module into a real Lua and what it exports.
require("spec.support.helper") -- puts the built module on package.cpath

describe("require('service_utils.WS.web_socket')", function()
	local ws = require("service_utils.WS.web_socket")

	it("exports the original fields", function()
		assert.are.equal("13", ws.WEBSOCKET_VERSION)
		assert.are.equal("258EAFA5-E914-47DA-95CA-C5AB0DC85B11", ws.WEBSOCKET_GUID)
		assert.are.equal("function", type(ws.accept))
		assert.are.equal("function", type(ws.handle_msg))
		assert.are.equal("function", type(ws.server))
	end)

	it("loads ws_const with every constant of the original", function()
		local c = require("service_utils.WS.ws_const")
		assert.are.same({ 0x80, 0x81, 0x82, 0x0a, 0x100, 1009, 1015, 11 },
			{ c.FRAME_FLAG_FIN, c.FRAME_TEXT, c.FRAME_BINARY, c.FRAME_OP_PONG, c.FRAME_OP_SETRAW,
				c.WS_PAYLOAD_TOO_BIG, c.WS_RESERVED_TLS_FAILURE, c.WS_ERR_INCOMPLETE_FRAME })
		assert.are.equal(14, c.MAX_HEADER_LENGTH)
	end)

	it("loads ws_util with the original function names", function()
		local u = require("service_utils.WS.ws_util")
		for _, name in ipairs({ "send_msg", "ping", "close", "add_ws_to_pool", "get_ws_from_pool" }) do
			assert.are.equal("function", type(u[name]), name)
		end
	end)

	it("binds a server on port 0 and reads the chosen port back", function()
		local server = ws.server({ port = 0, handler_base = "handlers" })
		assert.is_true(server.port > 0)
		assert.are.equal("127.0.0.1", server.host)
		assert.matches("^ws_server ws://127%.0%.0%.1:%d+$", tostring(server))
		server:stop()
		assert.is_true(server:run()) -- stopped before running: returns once it has wound down
		assert.is_true(server:run()) -- and at once after that
	end)

	it("refuses a handler base that is not a dotted identifier", function()
		assert.has_error(function() ws.server({ handler_base = "../etc" }) end)
	end)

	it("refuses to start without handler_base or routes: the network may not require what it likes", function()
		local ok, err = pcall(ws.server, { port = 0 })
		assert.is_false(ok)
		assert.matches("ws.server: say which handler modules clients may reach", tostring(err), 1, true)
	end)

	it("checks every route at start: a path, and a module that loads and has handle_message", function()
		package.path = "spec/support/?.lua;" .. package.path
		local cases = {
			{ { ["chat"] = "handlers.collector" }, "ws.server: routes: 'chat' is not a path" },
			{ { ["/chat"] = "handlers.no_such" }, "ws.server: routes['/chat']: WebSocket handler module 'handlers.no_such' not found" },
			{ { ["/chat"] = "handlers.nomsg" }, "ws.server: routes['/chat']: WebSocket handler module 'handlers.nomsg' has no handle_message function" },
		}
		for _, c in ipairs(cases) do
			local ok, err = pcall(ws.server, { routes = c[1] })
			assert.is_false(ok)
			assert.matches(c[2], tostring(err), 1, true)
		end
		local server = ws.server({ routes = { ["/chat"] = "handlers.collector" } })
		server:stop()
		server:run()
	end)

	it("names the option and the value it refuses", function()
		local cases = {
			{ { port = "x" }, "ws.server: port must be a whole number from 0 to 65535, got 'x'" },
			{ { port = 70000 }, "ws.server: port must be a whole number from 0 to 65535, got 70000" },
			{ { send_timeout = -1 }, "ws.server: send_timeout must be a number of seconds >= 0, got -1" },
			{ { origins = "x" }, "ws.server: origins must be a list of strings, got 'x'" },
			{ { log_level = "loud" }, "ws.server: log_level must be error, warn, info or debug, got 'loud'" },
			{ { tls = { cert = "/nonexistent.pem", key = "/nonexistent.pem" } }, "ws.server: cannot read tls.cert '/nonexistent.pem'" },
		}
		for _, c in ipairs(cases) do
			c[1].handler_base = "handlers"
			local ok, err = pcall(ws.server, c[1])
			assert.is_false(ok)
			assert.matches(c[2], tostring(err), 1, true)
		end
	end)

	it("names the function and the value when seconds are refused", function()
		local server = ws.server({ handler_base = "handlers" })
		local cases = {
			{ function() ws.sleep(-1) end, "ws.sleep: seconds must be a number of seconds >= 0, got -1" },
			{ function() server:stop(-2) end, "server:stop: timeout must be a number of seconds >= 0, got -2" },
		}
		for _, c in ipairs(cases) do
			local ok, err = pcall(c[1])
			assert.is_false(ok)
			assert.matches(c[2], tostring(err), 1, true)
		end
		server:stop()
		server:run()
	end)

	it("explains that handle_msg belongs to evluaserver", function()
		assert.has_error(function() ws.handle_msg() end)
	end)
end)
