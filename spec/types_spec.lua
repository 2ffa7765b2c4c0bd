-- The editor types (types/service_utils/WS/*.lua, LuaCATS for lua-language-server) against
-- the module itself: every function and field a module table exports is annotated, and
-- nothing is annotated that it does not export; every annotated method and field of the
-- server and connection objects is there.
local helper = require("spec.support.helper")
local ws = require("service_utils.WS.web_socket")

-- Names annotated for `class` in `file`: its `---@field` lines and `function <var>.x` /
-- `function <var>:x` definitions.
local function annotated(file, class, var)
	local names, in_class = {}, false
	for line in io.lines(file) do
		local c = line:match("^%-%-%-@class ([%w_.]+)")
		if c then
			in_class = c == class
		elseif in_class and line:match("^%-%-%-@field ") then
			names[line:match("^%-%-%-@field ([%w_]+)")] = true
		elseif not line:match("^%-%-%-") then
			in_class = false
		end
		local f = line:match("^function " .. var:gsub("%p", "%%%0") .. "[.:]([%w_]+)%(")
		if f then
			names[f] = true
		end
	end
	return names
end

local function keys(t, public_only)
	local out = {}
	for k in pairs(t) do
		if not public_only or not k:match("^_") or k == "_VERSION" then
			out[k] = true
		end
	end
	return out
end

local function sorted(set)
	local list = {}
	for k in pairs(set) do
		list[#list + 1] = k
	end
	table.sort(list)
	return list
end

describe("the editor types", function()
	for _, m in ipairs({
		{ "service_utils.WS.web_socket", "types/service_utils/WS/web_socket.lua", "ws", "ws" },
		{ "service_utils.WS.ws_util", "types/service_utils/WS/ws_util.lua", "ws_util", "ws_util" },
		{ "service_utils.WS.ws_const", "types/service_utils/WS/ws_const.lua", "ws_const", "ws_const" },
	}) do
		it("annotate exactly what " .. m[1] .. " exports", function()
			local module = require(m[1])
			assert.are.same(sorted(keys(module, true)), sorted(annotated(m[2], m[3], m[4])))
		end)
	end

	describe("of the objects", function()
		local server, conn
		setup(function()
			server = ws.server({ handler_base = "", port = 0, log = false })
			conn = assert(helper.connect(("ws://127.0.0.1:%d/examples/handlers/echo"):format(server.port)))
		end)
		teardown(function()
			conn:close()
			server:stop()
		end)

		it("find every annotated server method and field on a server", function()
			for name in pairs(annotated("types/service_utils/WS/web_socket.lua", "ws.server", "server")) do
				assert.is_not_nil(server[name], "server." .. name)
			end
		end)

		it("find every annotated connection method on a connection, and its fields readable", function()
			local file = "types/service_utils/WS/web_socket.lua"
			for name in pairs(annotated(file, "ws.connection", "connection")) do
				local ok, value = pcall(function() return conn[name] end)
				assert.is_true(ok, "connection." .. name .. ": " .. tostring(value))
			end
			for _, method in ipairs({ "send", "try_send", "ping", "close", "is_open", "recv", "subscribe", "unsubscribe", "topics" }) do
				assert.is_function(conn[method], method)
				assert.is_true(annotated(file, "ws.connection", "connection")[method], method .. " is annotated")
			end
		end)
	end)
end)
