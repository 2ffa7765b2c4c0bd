-- Installing with luarocks: `luarocks make` builds with cargo and installs the module into
-- a tree, where a plain `require` finds it through that tree's paths; `luarocks remove`
-- takes it away again.
local helper = require("spec.support.helper")

local version = _VERSION:match("%d+%.%d+")

-- Runs a shell command; returns whether it exited 0, and its output.
local function sh(cmd)
	local p = assert(io.popen(cmd .. ' 2>&1; echo "__exit=$?"'))
	local out = p:read("*a")
	p:close()
	local body, code = out:match("^(.-)__exit=(%d+)%s*$")
	return code == "0", body
end

if rawget(_G, "jit") then
	describe("luarocks", function()
		pending("luarocks --lua-version=5.1 installs for lua5.1, not LuaJIT: tested on the other Lua versions")
	end)
	return
end

describe("luarocks", function()
	local tree = os.tmpname()

	setup(function()
		os.remove(tree)
	end)
	teardown(function()
		os.execute("rm -rf " .. tree)
	end)

	it("finds nothing to complain about in either rockspec ('luarocks lint')", function()
		for _, spec in ipairs({ "rockspec/service_utils-ws-scm-1.rockspec", "rockspec/service_utils-ws-0.2.0-1.rockspec" }) do
			local ok, out = sh("luarocks lint " .. spec)
			assert.is_true(ok, spec .. ": " .. out)
		end
	end)

	it("releases the version the module reports (ws._VERSION, the rockspec, CHANGELOG.md)", function()
		local ws = require("service_utils.WS.web_socket")
		assert.matches("^%d+%.%d+%.%d+$", ws._VERSION)
		assert.is_truthy(io.open("rockspec/service_utils-ws-" .. ws._VERSION .. "-1.rockspec"), "no rockspec for " .. ws._VERSION)
		assert.matches("## " .. ws._VERSION:gsub("%.", "%%."), helper.read_file("CHANGELOG.md"))
	end)

	it("installs with 'luarocks make' and removes with 'luarocks remove'", function()
		local rocks = ("luarocks --lua-version=%s --tree=%s"):format(version, tree)
		local ok, out = sh(rocks .. " make rockspec/service_utils-ws-scm-1.rockspec")
		assert.is_true(ok, out)
		local probe = ([[eval "$(%s path)"; %s -e "local ws = require('service_utils.WS.web_socket'); ]] ..
			[[print(ws.WEBSOCKET_VERSION, require('service_utils.WS.ws_const').FRAME_TEXT, ]] ..
			[[type(require('service_utils.WS.ws_util').send_msg))"]]):format(rocks, helper.LUA)
		ok, out = sh(probe)
		assert.is_true(ok, out)
		assert.are.equal("13\t129\tfunction\n", out)
		ok, out = sh(rocks .. " show --rock-dir service_utils-ws")
		assert.is_true(ok, out)
		assert.is_truthy(io.open(out:match("^%s*(.-)%s*$") .. "/types/service_utils/WS/web_socket.lua"),
			"the editor types are installed with the rock")
		ok, out = sh(rocks .. " remove service_utils-ws")
		assert.is_true(ok, out)
		ok, out = sh(probe)
		assert.is_false(ok)
		assert.matches("module 'service_utils.WS.web_socket' not found", out, 1, true)
	end)
end)
