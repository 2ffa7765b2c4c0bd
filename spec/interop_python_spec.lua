-- The server against an independent client: Python's `websockets` library.
local helper = require("spec.support.helper")

describe("interop with Python websockets", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("echoes text, binary, 0 B to 8 MiB, fragmented messages and pings", function()
		helper.all_ok(helper.python("echo", server.port), 17)
	end)

	it("broadcasts on /chat to every client", function()
		helper.all_ok(helper.python("chat", server.port), 2)
	end)

	it("completes the closing handshake echoing the client's code", function()
		helper.all_ok(helper.python("close", server.port), 1)
	end)
end)
