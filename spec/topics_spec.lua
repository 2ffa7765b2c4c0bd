-- Topics (publish/subscribe inside a server): subscriptions, publishing once to many,
-- limits, slow subscribers, checked with raw clients on the wire.
local helper = require("spec.support.helper")

local function client(port)
	return (helper.open(port, "/pubsub"))
end

-- Sends a command to /pubsub and returns the answer.
local ask = helper.ask

local next_frame = helper.next_frame

describe("topics", function()
	local server
	setup(function() server = helper.start_server() end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("deliver a publish to every subscriber, once, and to nobody else", function()
		local a, b, c, outsider = client(server.port), client(server.port), client(server.port), client(server.port)
		assert.are.equal("subscribed news", ask(a, "sub news"))
		assert.are.equal("subscribed news", ask(b, "sub news"))
		assert.are.equal("subscribed news", ask(b, "sub news"), "subscribing twice is one subscription")
		assert.are.equal("subscribed sport", ask(outsider, "sub sport"))
		assert.are.equal("published 2", ask(c, "pub news hello all"))
		for _, s in ipairs({ a, b }) do
			local f = next_frame(s, 5)
			assert.are.same({ helper.OP.TEXT, "hello all" }, { f.opcode, f.payload })
			assert.is_nil(next_frame(s, 0.2), "delivered once")
		end
		assert.is_nil(next_frame(outsider, 0.2))
		for _, s in ipairs({ a, b, c, outsider }) do s:close() end
	end)

	it("leave a subscriber out when asked (exclude), and through server:publish too", function()
		local a, b = client(server.port), client(server.port)
		ask(a, "sub room")
		ask(b, "sub room")
		assert.are.equal("published 1", ask(a, "pubx room from a"))
		assert.are.equal("from a", next_frame(b, 5).payload)
		assert.is_nil(next_frame(a, 0.2))
		a:send(helper.frame(helper.OP.TEXT, "spub room via the server object"))
		local got = { next_frame(a, 5).payload, next_frame(a, 5).payload } -- the message, the answer
		table.sort(got)
		assert.are.same({ "published 2", "via the server object" }, got)
		assert.are.equal("via the server object", next_frame(b, 5).payload)
		a:close()
		b:close()
	end)

	it("list a connection's topics and stop delivering after unsubscribe", function()
		local a, b = client(server.port), client(server.port)
		ask(a, "sub t2")
		ask(a, "sub t1")
		assert.are.equal("topics t1,t2", ask(a, "topics"))
		assert.are.equal("unsubscribed true", ask(a, "unsub t1"))
		assert.are.equal("unsubscribed false", ask(a, "unsub t1"))
		assert.are.equal("topics t2", ask(a, "topics"))
		assert.are.equal("published 0", ask(b, "pub t1 anyone?"))
		assert.is_nil(next_frame(a, 0.2))
		a:close()
		b:close()
	end)

	it("forget a connection that has closed", function()
		local a, b = client(server.port), client(server.port)
		ask(a, "sub gone")
		assert.are.equal("published 1", ask(b, "pub gone first"))
		a:send(helper.frame(helper.OP.CLOSE, helper.close_payload(1000)))
		helper.read_close(a)
		a:close()
		assert.is_true(helper.eventually(function() return ask(b, "pub gone second") == "published 0" end, 5))
		b:close()
	end)

	it("refuse more than max_topics subscriptions with kind limit", function()
		local limited = helper.start_server({ max_topics = 2 })
		local a = client(limited.port)
		ask(a, "sub one")
		ask(a, "sub two")
		assert.are.equal("subscribe: this connection already has 2 topics (max_topics) (limit)", ask(a, "sub three"))
		assert.are.equal("subscribed two", ask(a, "sub two"), "an existing subscription is not a new one")
		a:close()
		limited.stop()
	end)

	it("belong to a server's connections only: a client's subscribe raises", function()
		local conn = assert(helper.connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		local ok, err = pcall(conn.subscribe, conn, "news")
		assert.is_false(ok)
		assert.matches("subscribe: only a server's connections have topics", err)
		conn:close()
	end)

	it("raise for a topic name over 256 bytes (a handler error: 1011)", function()
		local a = client(server.port)
		a:send(helper.frame(helper.OP.TEXT, "sub " .. ("x"):rep(257)))
		assert.are.equal(1011, (helper.read_close(a)))
		a:close()
	end)

	describe("with a subscriber that does not read", function()
		local function flood(options)
			local s = helper.start_server(options)
			local slow, fast, publisher = client(s.port), client(s.port), client(s.port)
			ask(slow, "sub firehose")
			ask(fast, "sub firehose")
			fast:settimeout(30)
			-- 200 messages of 64 KiB: 12.5 MiB, far more than the socket buffers hold
			publisher:send(helper.frame(helper.OP.TEXT, "flood firehose 200 65536"))
			local got = 0
			while got < 200 do
				local f = helper.read_frame(fast)
				if not f then break end
				got = got + 1
			end
			assert.are.equal("flooded", helper.read_frame(publisher).payload)
			return s, slow, publisher, got
		end

		it("drops what it cannot take, counts it, and bounds its queue (slow_subscriber = drop)", function()
			local s, slow, publisher, got = flood({ send_buffer = 262144 })
			assert.are.equal(200, got, "a reading subscriber misses nothing")
			local published, dropped, max_queued = ask(publisher, "stats"):match("published=(%d+) dropped=(%d+) max_queued=(%d+)")
			assert.are.equal("200", published)
			assert.is_true(tonumber(dropped) > 0, "dropped " .. dropped)
			assert.is_true(tonumber(max_queued) <= 262144 + 65536 + 14, "queued " .. max_queued)
			slow:close()
			s.stop()
		end)

		it("closes it with 1008 (slow_subscriber = close)", function()
			local s, slow = flood({ send_buffer = 262144, slow_subscriber = "close" })
			slow:settimeout(30)
			assert.are.equal(1008, (helper.read_close(slow)))
			slow:close()
			s.stop()
		end)
	end)
end)

describe("the chat example's rooms", function()
	local server
	setup(function() server = helper.start_server({ handler_base = "handlers" }) end)
	teardown(function() server.stop(); helper.stop_all() end)

	it("reach everyone in the room, the sender included, and nobody in another room", function()
		local a, b = helper.open(server.port, "/chat?room=blue"), helper.open(server.port, "/chat?room=blue")
		local other, lobby = helper.open(server.port, "/chat?room=red"), helper.open(server.port, "/chat")
		a:send(helper.frame(helper.OP.TEXT, "hi blue"))
		assert.are.equal("hi blue", next_frame(a, 5).payload)
		assert.are.equal("hi blue", next_frame(b, 5).payload)
		assert.is_nil(next_frame(other, 0.2))
		assert.is_nil(next_frame(lobby, 0.2))
		for _, s in ipairs({ a, b, other, lobby }) do s:close() end
	end)
end)
