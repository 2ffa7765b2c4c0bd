-- The evluaserver runtime, under the stand-in of the `platform` global
-- (spec/support/platform.lua): every platform I/O call yields to a scheduler, as in
-- evluaserver, so a yield across a Rust frame would fail these specs.
local helper = require("spec.support.helper")
local OP = helper.OP

if _VERSION == "Lua 5.1" then
	describe("under evluaserver", function()
		pending("evluaserver runs Lua 5.3: its runtime is tested on 5.3 and 5.4, not on 5.1 or LuaJIT")
	end)
	return
end

local function start_evl(mode, ...)
	return helper.start_process(('LUA_CPATH="%s/?.so;;" exec %s spec/support/evl_server.lua %s %s'):format(
		helper.CPATH_ROOT, helper.LUA, mode, table.concat({ ... }, " ")), "evl_server")
end

describe("under evluaserver, the server side (REST controller, ws.accept, ws.handle_msg)", function()
	local server
	setup(function() server = start_evl("serve") end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("serves a browser-like client (Python websockets): text, binary, fragments, empty messages, pings", function()
		helper.all_ok(helper.python("echo", server.port), 17)
	end)

	it("answers with the original rejections", function()
		local res = helper.request(server.port, "/echo", { ["Sec-WebSocket-Version"] = false })
		assert.are.equal(400, res.status)
		assert.are.equal('{"error_message":"Missing Sec-WebSocket-Version in handshake request"}', res.headers["x-msg"])
		assert.are.equal('{"error_message":"Missing Sec-WebSocket-Version in handshake request"}', res.body)
		res = helper.request(server.port, "/")
		assert.are.equal('{"error_message":"Path empty: Unable to deduce message handler"}', res.body)
	end)

	it("matches request header names in any case (the original did not)", function()
		local raw = "GET /echo HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" ..
			"sec-websocket-key: " .. helper.KEY .. "\r\nsec-websocket-version: 13\r\n\r\n"
		local res = helper.raw_request(server.port, raw)
		assert.are.equal(101, res.status)
		assert.are.equal(helper.ACCEPT, res.headers["sec-websocket-accept"])
	end)

	it("sends unmasked server frames and answers pings with FIN set (the original masked and left FIN off)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.PING, "hi"))
		assert.are.same({ fin = true, rsv = 0, opcode = OP.PONG, masked = false, payload = "hi" }, helper.read_frame(sock))
		sock:send(helper.frame(OP.TEXT, "echo me"))
		assert.are.same({ fin = true, rsv = 0, opcode = OP.TEXT, masked = false, payload = "echo me" }, helper.read_frame(sock))
		sock:close()
	end)

	it("reassembles fragments across handle_msg calls (the original raised Invalid OP_CODE 0)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.TEXT, "frag", { fin = false }))
		sock:send(helper.frame(OP.CONT, "men", { fin = false }))
		sock:send(helper.frame(OP.CONT, "ted"))
		assert.are.equal("fragmented", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("accepts zero-length payloads (the original raised)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, ""))
		local f = helper.read_frame(sock)
		assert.are.same({ OP.BINARY, "" }, { f.opcode, f.payload })
		sock:close()
	end)

	it("keeps NUL bytes of binary messages (the original truncated at the first NUL)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, "a\0b\0c"))
		assert.are.equal("a\0b\0c", helper.read_frame(sock).payload)
		sock:close()
	end)

	it("answers a close with a close frame carrying the status code (the original sent no reply)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.CLOSE, helper.close_payload(4321, "bye")))
		assert.are.equal(4321, (helper.read_close(sock)))
		assert.is_true(helper.closed_by_peer(sock))
	end)

	it("closes with 1009 on an oversized message without reading it (the original allocated it)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, "", { len = 2 ^ 40 }))
		assert.are.equal(1009, (helper.read_close(sock)))
		sock:close()
	end)

	it("closes with 1007 on invalid UTF-8 (the original did not check)", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.TEXT, "\255"))
		assert.are.equal(1007, (helper.read_close(sock)))
		sock:close()
	end)

	it("closes a connection whose handler raises with 1011 and keeps serving", function()
		local sock = helper.open(server.port, "/boom")
		sock:send(helper.frame(OP.TEXT, "boom"))
		assert.are.equal(1011, (helper.read_close(sock)))
		sock:close()
		local again = helper.open(server.port, "/echo")
		again:send(helper.frame(OP.TEXT, "still serving"))
		assert.are.equal("still serving", helper.read_frame(again).payload)
		again:close()
	end)
end)

describe("under evluaserver, the client side (ws.connect through platform.*, ws_util)", function()
	after_each(helper.stop_all)

	it("connects, exchanges, pings, pools, closes and hands messages to a msg_handler", function()
		local target = helper.start_server()
		local bad = helper.start_python("bad", "no-accept")
		helper.all_ok(helper.lines_of(('LUA_CPATH="%s/?.so;;" timeout 60 %s spec/support/evl_server.lua client ws://127.0.0.1:%d ws://127.0.0.1:%d/x'):format(
			helper.CPATH_ROOT, helper.LUA, target.port, bad.port)), 16)
		target.stop()
		bad.stop()
	end)
end)
