-- Handlers cannot take the server down; waiting handlers do not stop the others; the
-- server stops cleanly from a handler, from SIGTERM and from SIGINT.
local helper = require("spec.support.helper")
local OP = helper.OP

describe("robustness", function()
	after_each(helper.stop_all)

	it("closes only the failing connection with 1011 and logs the handler's name", function()
		local server = helper.start_server()
		local bystander = helper.open(server.port, "/boom")
		local victim = helper.open(server.port, "/boom")
		victim:send(helper.frame(OP.TEXT, "boom"))
		local code = helper.read_close(victim)
		assert.are.equal(1011, code)
		victim:close()
		assert.is_true(helper.eventually(function()
			local log = helper.read_file(server.log)
			return log:find("handler 'handlers.boom' failed in handle_message", 1, true) ~= nil
				and log:find("kaboom from the test handler", 1, true) ~= nil
		end))
		bystander:send(helper.frame(OP.TEXT, "still fine"))
		assert.are.equal("still fine", helper.read_frame(bystander).payload)
		bystander:close()
		server.stop()
	end)

	it("runs a sleeping handler without stopping other connections", function()
		local server = helper.start_server()
		local sleeper = helper.open(server.port, "/sleepy")
		local other = helper.open(server.port, "/echo")
		sleeper:send(helper.frame(OP.TEXT, "2"))
		other:send(helper.frame(OP.TEXT, "quick"))
		assert.are.equal("quick", helper.read_frame(other).payload)
		-- Ordering is the claim: the echo came back while the sleeper still slept. A server
		-- that blocked for the sleep would have answered the sleeper first.
		sleeper:settimeout(0)
		local early, err = sleeper:receive(1)
		assert.are.same({ nil, "timeout" }, { early, err })
		sleeper:settimeout(helper.TIMEOUT)
		assert.are.equal("slept", helper.read_frame(sleeper).payload)
		sleeper:close()
		other:close()
		server.stop()
	end)

	it("suspends a handler sending to a peer that does not read, serving the others meanwhile", function()
		local server = helper.start_server()
		local sink = helper.open(server.port, "/flood")
		local other = helper.open(server.port, "/echo")
		sink:send(helper.frame(OP.TEXT, "256")) -- 16 MiB, far more than socket buffers hold
		for i = 1, 20 do
			other:send(helper.frame(OP.TEXT, "ping " .. i))
			assert.are.equal("ping " .. i, helper.read_frame(other).payload)
		end
		-- The handler is parked on a full outbox (1 MiB and one block), not queueing all 16 MiB.
		local control = helper.open(server.port, "/control")
		control:send(helper.frame(OP.TEXT, "max_queued"))
		local most = tonumber(helper.read_frame(control).payload)
		assert.is_true(most <= 1024 * 1024 + 65536 + 14, "a connection queued " .. most .. " bytes")
		control:close()
		-- Now drain the sink: every block arrives, then "done".
		for i = 1, 256 do
			local f = helper.read_frame(sink)
			assert.are.equal(65536, #f.payload, "block " .. i)
		end
		assert.are.equal("done", helper.read_frame(sink).payload)
		sink:close()
		other:close()
		server.stop()
	end)

	it("stops from inside a handler, closing open connections with 1001", function()
		local server = helper.start_server()
		local open = helper.open(server.port, "/echo")
		local control = helper.open(server.port, "/control")
		control:send(helper.frame(OP.TEXT, "stop"))
		local code, reason = helper.read_close(open)
		assert.are.same({ 1001, "server shutting down" }, { code, reason })
		open:send(helper.frame(OP.CLOSE, helper.close_payload(1001)))
		assert.are.equal(1001, (helper.read_close(control)))
		control:send(helper.frame(OP.CLOSE, helper.close_payload(1001)))
		assert.is_true(helper.eventually(function() return not server.alive() end))
		assert.matches("server stopped", server.stop())
	end)

	for _, sig in ipairs({ "TERM", "INT" }) do
		it("stops gracefully on SIG" .. sig .. ", sending 1001 to every connection", function()
			local server = helper.start_server()
			local conns = {}
			for i = 1, 5 do
				conns[i] = helper.open(server.port, "/echo")
			end
			os.execute(("kill -%s %d"):format(sig, server.pid))
			for i = 1, 5 do
				assert.are.equal(1001, (helper.read_close(conns[i])), "connection " .. i)
				conns[i]:send(helper.frame(OP.CLOSE, helper.close_payload(1001)))
			end
			assert.matches("server stopped", server.stop())
		end)
	end

	it("leaves signals alone when run with signals = false: SIGTERM ends the process as it would any", function()
		local server = helper.start_server({ signals = false })
		local conn = helper.open(server.port, "/echo")
		os.execute(("kill -TERM %d"):format(server.pid))
		assert.is_true(helper.eventually(function() return not server.alive() end))
		local rest, _, partial = conn:receive("*a")
		assert.are.equal("", rest or partial, "no close frame: the process was terminated, not stopped")
		assert.is_nil(server.stop():match("server stopped"))
	end)

	it("drops a client that sends its request too slowly", function()
		local server = helper.start_server({ handshake_timeout = 0.5 })
		local slow = helper.tcp(server.port)
		slow:send("GET /echo HTTP/1.1\r\n")
		assert.is_true(helper.closed_by_peer(slow)) -- within the socket's 5 s, or it fails
		local ok = helper.open(server.port, "/echo")
		ok:close()
		server.stop()
	end)

	it("survives a client that disconnects in the middle of a frame", function()
		local server = helper.start_server()
		local sock = helper.open(server.port, "/echo")
		sock:send(helper.frame(OP.TEXT, string.rep("x", 1000)):sub(1, 100))
		sock:close()
		assert.is_true(helper.echoes(server.port))
		server.stop()
	end)
end)
