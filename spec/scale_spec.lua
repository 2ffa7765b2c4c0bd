-- Many connections in one server process, on every Lua. On Lua 5.1 and LuaJIT mlua keeps
-- its references to Lua values on an auxiliary stack of 8,000 slots: a connection that
-- held even one between its events would cap a server below 8,000 connections (and panic
-- past it), so each keeps what it needs in the Lua registry instead.
local helper = require("spec.support.helper")

describe("a server with many connections", function()
	after_each(helper.stop_all)

	it("holds 9,000 connections that each echoed a message, and echoes on every one of them again", function()
		local server = helper.start_server()
		local lines = helper.lines_of(("timeout 300 %s spec/support/many_conns.py --url ws://127.0.0.1:%d/echo --count 9000"):format(
			helper.PYTHON, server.port))
		local report = table.concat(lines, "\n")
		assert.are.equal("opened 9000, echoed 9000 twice", lines[#lines], report .. "\n" .. helper.read_file(server.log))
		assert.is_true(server.alive(), helper.read_file(server.log))
		server.stop()
	end)
end)
