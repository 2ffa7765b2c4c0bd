-- The server against an independent client: Python's `websockets` library.
local helper = require("spec.support.helper")

describe("interop with Python websockets", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	local function all_ok(lines, expected)
		assert.is_true(#lines >= expected, table.concat(lines, "\n"))
		for _, line in ipairs(lines) do
			assert.matches("^ok ", line)
		end
	end

	it("echoes text, binary, 0 B to 8 MiB, fragmented messages and pings", function()
		all_ok(helper.python("echo", server.port), 17)
	end)

	it("broadcasts on /chat to every client", function()
		all_ok(helper.python("chat", server.port), 2)
	end)

	it("completes the closing handshake echoing the client's code", function()
		all_ok(helper.python("close", server.port), 1)
	end)
end)
