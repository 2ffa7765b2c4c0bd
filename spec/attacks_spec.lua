-- Hostile clients: what each attack that once worked does now. Bounds are asserted on
-- what the library itself counts (server:stats()), never on RSS or time.
local helper = require("spec.support.helper")
local socket = require("socket")
local OP = helper.OP

describe("under attack", function()
	after_each(helper.stop_all)

	it("survives large sends to a peer that has gone away (no SIGPIPE, no signal handler changed)", function()
		local server = helper.start_server()
		for _ = 1, 3 do
			local sock = helper.open(server.port, "/firehose")
			sock:send(helper.frame(OP.TEXT, "go"))
			-- Closed without reading: the server's first 64 KiB draws a reset, and its next
			-- writes meet EPIPE (the socket was half-closed: CLOSE_WAIT).
			sock:close()
		end
		socket.sleep(1)
		assert.is_true(server.alive(), "the server died:\n" .. helper.read_file(server.log))
		local ignored = helper.read_file(("/proc/%d/status"):format(server.pid)):match("SigIgn:%s*(%x+)")
		-- SIGPIPE is signal 13: bit 12 of the ignored-signals mask (its 4th hex digit from
		-- the right) stays clear.
		assert.are.equal(0, math.floor(tonumber(ignored:sub(-4), 16) / 4096) % 2, "SIGPIPE is ignored: SigIgn " .. ignored)
		local again = helper.open(server.port, "/echo")
		again:send(helper.frame(OP.TEXT, "still here"))
		assert.are.equal("still here", helper.read_frame(again).payload)
		again:close()
		server.stop()
	end)
end)
