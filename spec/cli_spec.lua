-- examples/client.lua, the command-line client: lines of stdin out as messages, what
-- arrives printed, errors said on stderr with a non-zero exit.
local helper = require("spec.support.helper")

-- Runs the client with `args`, `input` on stdin; returns its output (stdout and stderr)
-- and whether it exited 0.
local function client(args, input)
	local stdin = os.tmpname()
	local f = assert(io.open(stdin, "w"))
	f:write(input)
	f:close()
	local p = assert(io.popen(('LUA_CPATH="%s/?.so;;" timeout 30 %s examples/client.lua %s < %s 2>&1; echo "exit=$?"')
		:format(helper.CPATH_ROOT, helper.LUA, args, stdin)))
	local out = p:read("*a")
	p:close()
	os.remove(stdin)
	local body, code = out:match("^(.-)exit=(%d+)%s*$")
	return body, code == "0"
end

describe("the command-line client", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("sends each line and prints each answer", function()
		local out, ok = client(("ws://127.0.0.1:%d/echo"):format(server.port), "hello\nκόσμε\n")
		assert.is_true(ok, out)
		assert.are.equal("hello\nκόσμε\n", out)
	end)

	it("sends binary with --binary and prints the length of binary answers", function()
		local out, ok = client(("ws://127.0.0.1:%d/echo --binary"):format(server.port), "abc\n")
		assert.is_true(ok, out)
		assert.are.equal("<binary message of 3 bytes>\n", out)
	end)

	it("says why it cannot connect and exits non-zero", function()
		local out, ok = client("ws://127.0.0.1:1/echo", "")
		assert.is_false(ok)
		assert.matches("^connect: cannot connect to 127.0.0.1:1: .*%(refused%)\n$", out)
	end)

	it("explains its usage", function()
		local out, ok = client("ws://127.0.0.1:1/ --header nocolon", "")
		assert.is_false(ok)
		assert.matches('--header wants "Name: value", got nocolon', out, 1, true)
	end)
end)
