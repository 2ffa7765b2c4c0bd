-- Protocol violations close the connection with the code of RFC 6455 §7.4.1, and the
-- server keeps serving everyone else.
local helper = require("spec.support.helper")
local OP = helper.OP

describe("protocol errors", function()
	local server
	setup(function() server = helper.start_server({ max_message_size = 1048576 }) end)
	teardown(function() server.stop(); helper.stop_all() end)

	-- Sends `bytes` on a fresh /echo connection; returns the close code received.
	local function close_code_for(bytes)
		local sock = helper.open(server.port, "/echo")
		sock:send(bytes)
		local code, reason = helper.read_close(sock)
		sock:close()
		return code, reason
	end

	it("closes with 1002 on an unmasked client frame", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.TEXT, "x", { mask = false })))
	end)

	it("closes with 1002 when reserved bits are set", function()
		for _, rsv in ipairs({ 0x40, 0x20, 0x10 }) do
			assert.are.equal(1002, close_code_for(helper.frame(OP.TEXT, "x", { rsv = rsv })))
		end
	end)

	it("closes with 1002 on reserved opcodes", function()
		for _, op in ipairs({ 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 }) do
			assert.are.equal(1002, close_code_for(helper.frame(op, "")), "opcode " .. op)
		end
	end)

	it("closes with 1002 on a continuation without a message to continue", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.CONT, "x")))
	end)

	it("closes with 1002 on a new message inside a fragmented one", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.TEXT, "a", { fin = false }) .. helper.frame(OP.TEXT, "b")))
	end)

	it("closes with 1002 on a control frame over 125 bytes", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.PING, string.rep("p", 126))))
	end)

	it("closes with 1002 on a fragmented control frame", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.PING, "p", { fin = false })))
	end)

	it("closes with 1007 on invalid UTF-8 in a text message", function()
		assert.are.equal(1007, close_code_for(helper.frame(OP.TEXT, "ok\255")))
	end)

	it("closes with 1007 on invalid UTF-8 split across fragments", function()
		assert.are.equal(1007, close_code_for(helper.frame(OP.TEXT, "\206", { fin = false }) .. helper.frame(OP.CONT, "\65")))
	end)

	it("closes with 1007 on an invalid UTF-8 close reason", function()
		assert.are.equal(1007, close_code_for(helper.frame(OP.CLOSE, helper.close_payload(1000, "\255"))))
	end)

	it("closes with 1002 on invalid close codes", function()
		for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000 }) do
			assert.are.equal(1002, close_code_for(helper.frame(OP.CLOSE, helper.close_payload(code))), "code " .. code)
		end
	end)

	it("closes with 1002 on a 1-byte close body", function()
		assert.are.equal(1002, close_code_for(helper.frame(OP.CLOSE, "\3")))
	end)

	it("closes with 1009 on a message over the maximum, from the header alone", function()
		-- Announces a 1 GiB frame and sends none of it: the answer must not wait for it.
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, "", { len = 2 ^ 30 }))
		assert.are.equal(1009, (helper.read_close(sock)))
		sock:close()
	end)

	it("closes with 1009 when fragments add up to more than the maximum", function()
		local chunk = string.rep("z", 600000)
		assert.are.equal(1009, close_code_for(helper.frame(OP.BINARY, chunk, { fin = false }) .. helper.frame(OP.CONT, chunk)))
	end)

	it("accepts a message of exactly the maximum size", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.BINARY, string.rep("m", 1048576)))
		assert.are.equal(1048576, #helper.read_frame(sock).payload)
		sock:close()
	end)

	it("accepts zero-length payloads of every kind", function()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.TEXT, "") .. helper.frame(OP.BINARY, "") .. helper.frame(OP.PING, "") .. helper.frame(OP.PONG, ""))
		local t, b, p = helper.read_frame(sock), helper.read_frame(sock), helper.read_frame(sock)
		assert.are.same({ OP.TEXT, "", OP.BINARY, "", OP.PONG, "" }, { t.opcode, t.payload, b.opcode, b.payload, p.opcode, p.payload })
		sock:close()
	end)

	it("keeps serving other connections while one is closed for a violation", function()
		local bystander = helper.open(server.port, "/echo")
		assert.are.equal(1002, close_code_for(helper.frame(OP.TEXT, "x", { mask = false })))
		bystander:send(helper.frame(OP.TEXT, "still here"))
		assert.are.equal("still here", helper.read_frame(bystander).payload)
		bystander:close()
		assert.is_true(helper.echoes(server.port))
	end)
end)
