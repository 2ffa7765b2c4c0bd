-- ws.connect{..., reconnect = ...}: a connection that comes back after its server went away
-- and came back on the same port, with RFC 6455 §7.2.3's backoff.
local helper = require("spec.support.helper")
package.path = "spec/support/?.lua;" .. package.path -- for msg_handler = "handlers.reconnect_probe"
local ws = require("service_utils.WS.web_socket")
local socket = require("socket")

-- Waits (running the event loop) until pred() holds, for at most `seconds`.
local function eventually(pred, seconds)
	local deadline = socket.gettime() + seconds
	while socket.gettime() < deadline do
		if pred() then
			return true
		end
		ws.sleep(0.05)
	end
	return pred()
end

local function count(list, item)
	local n = 0
	for _, v in ipairs(list) do
		if v == item then n = n + 1 end
	end
	return n
end

describe("a reconnecting client connection", function()
	after_each(helper.stop_all)

	it("sees open, close, open when its server goes away and comes back, and messages flow again", function()
		local port = helper.free_port()
		local server = helper.start_server({ port = port })
		local probe = require("handlers.reconnect_probe")
		local conn = assert(ws.connect({ url = ("ws://127.0.0.1:%d/echo"):format(port), hdrs = {}, external = false,
			timeout = 5, msg_handler = "handlers.reconnect_probe", reconnect = { initial = 0.2, max = 0.5, factor = 2 } }))
		assert(conn:send("one"))
		assert.is_true(eventually(function() return count(probe.events, "msg:one") == 1 end, 5))
		assert.are.equal(conn, probe.conn_seen, "the handler is given the reconnecting connection")

		server.stop()
		assert.is_true(eventually(function() return count(probe.events, "close:1001") == 1 end, 5), table.concat(probe.events, " "))
		assert.are.same({ nil, "reconnecting", "reconnecting" }, { conn:send("lost") })
		assert.is_false(conn:is_open())
		-- down for a while: the attempts back off (random first delay up to 0.2 s, then 0.4, then 0.5 s)
		assert.is_true(eventually(function() return #conn.delays >= 3 end, 5))
		assert.is_true(conn.delays[1] <= 0.2, "first delay " .. conn.delays[1])
		assert.are.equal(0.4, conn.delays[2])
		assert.are.equal(0.5, conn.delays[3], "capped at max")

		server = helper.start_server({ port = port })
		assert.is_true(eventually(function() return count(probe.events, "open") == 2 end, 5), table.concat(probe.events, " "))
		assert(conn:send("two"))
		assert.is_true(eventually(function() return count(probe.events, "msg:two") == 1 end, 5))

		-- close ends it for good: no more attempts after the server goes away again
		assert(conn:close())
		assert.is_true(eventually(function() return count(probe.events, "close:1000") == 1 end, 5))
		local attempts = #conn.delays
		server.stop()
		-- its last connection has ended (handle_close ran) and no retry loop runs: nothing
		-- is left that could try again
		assert.is_true(eventually(function() return ws.open_connections() == 0 end, 5))
		assert.is_false(conn.retrying)
		assert.are.equal(attempts, #conn.delays)
		assert.are.same({ nil, "send: connection is closed", "closed" }, { conn:send("gone") })
	end)

	it("refuses reconnect without a msg_handler, and a bad policy, naming the input", function()
		local ok, err = pcall(ws.connect, { url = "ws://127.0.0.1:1/", hdrs = {}, external = false, reconnect = true })
		assert.is_false(ok)
		assert.matches("connect: inputs.reconnect needs inputs.msg_handler", tostring(err), 1, true)
		ok, err = pcall(ws.connect, { url = "ws://127.0.0.1:1/", hdrs = {}, external = false,
			msg_handler = "handlers.reconnect_probe", reconnect = { factor = 0.5 } })
		assert.is_false(ok)
		assert.matches("connect: inputs.reconnect.factor must be a number >= 1, got 0.5", tostring(err), 1, true)
	end)
end)
