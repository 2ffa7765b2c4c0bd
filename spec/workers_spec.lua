-- workers = 2: two processes serve one port; topics, counters and stop span both.
local helper = require("spec.support.helper")

local ask = helper.ask

-- Opens /pubsub connections until there is one in each worker (bounded); returns them
-- by worker number and how many were opened.
local function one_per_worker(port)
	local by_worker, opened = {}, 0
	while not (by_worker[1] and by_worker[2]) and opened < 200 do
		local sock = helper.open(port, "/pubsub")
		opened = opened + 1
		local n = tonumber(ask(sock, "worker"):match("^worker (%d) of 2$"))
		if by_worker[n] then
			sock:close()
		else
			by_worker[n] = sock
		end
	end
	return by_worker, opened
end

describe("a server with workers = 2", function()
	local server
	setup(function() server = helper.start_server({ workers = 2, worker_init = "handlers.worker_init" }) end)
	teardown(function() helper.stop_all() end)

	it("serves connections in both workers on one port", function()
		local by_worker, opened = one_per_worker(server.port)
		assert.is_truthy(by_worker[1], "no connection in worker 1 after " .. opened)
		assert.is_truthy(by_worker[2], "no connection in worker 2 after " .. opened)
		by_worker[1]:close()
		by_worker[2]:close()
	end)

	it("runs worker_init in every worker", function()
		local by_worker = one_per_worker(server.port)
		assert.are.equal("init true", ask(by_worker[1], "init"))
		assert.are.equal("init true", ask(by_worker[2], "init"))
		by_worker[1]:close()
		by_worker[2]:close()
	end)

	it("delivers a publish in one worker to subscribers in the other", function()
		local by_worker = one_per_worker(server.port)
		assert.are.equal("subscribed news", ask(by_worker[2], "sub news"))
		assert.are.equal("published 0", ask(by_worker[1], "pub news across workers"), "no subscriber in worker 1")
		by_worker[2]:settimeout(5)
		assert.are.equal("across workers", helper.read_frame(by_worker[2]).payload)
		by_worker[1]:close()
		by_worker[2]:close()
	end)

	it("adds up the counters of both workers in stats()", function()
		local by_worker = one_per_worker(server.port)
		local before = tonumber(ask(by_worker[1], "accepted"):match("%d+"))
		for _ = 1, 6 do
			helper.open(server.port, "/pubsub"):close()
		end
		assert(helper.eventually(function()
			return tonumber(ask(by_worker[1], "accepted"):match("%d+")) >= before + 6
				and tonumber(ask(by_worker[2], "accepted"):match("%d+")) >= before + 6
		end, 5), "both workers count every handshake of the server")
		by_worker[1]:close()
		by_worker[2]:close()
	end)

	it("stops every worker on SIGTERM, each closing its connections with 1001", function()
		local s = helper.start_server({ workers = 2 })
		local by_worker = one_per_worker(s.port)
		s.stop("TERM")
		for n = 1, 2 do
			by_worker[n]:settimeout(10)
			assert.are.equal(1001, (helper.read_close(by_worker[n])), "worker " .. n)
			by_worker[n]:close()
		end
		assert.is_false(helper.exec_ok(("ps --ppid %d -o pid= | grep -q ."):format(s.pid)), "a worker outlived the server")
	end)
end)
