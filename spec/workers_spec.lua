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

-- A /pubsub connection served by worker `n`, once one is (a replacement takes a moment
-- to start): opened again and again for up to `seconds`.
local function connection_in_worker(port, n, seconds)
	local found
	helper.eventually(function()
		local sock = helper.open(port, "/pubsub")
		if ask(sock, "worker") == ("worker %d of 2"):format(n) then
			found = sock
			return true
		end
		sock:close()
	end, seconds)
	return found
end

-- The process id of the worker `sock` is served by.
local function pid_of(sock)
	return tonumber(ask(sock, "pid"):match("^pid (%d+)$"))
end

-- stats().open_connections as the worker of `sock` adds them up.
local function open_of(sock)
	return tonumber(ask(sock, "open"):match("^open (%d+)$"))
end

local function alive(pid)
	return helper.exec_ok(("kill -0 %d 2>/dev/null"):format(pid))
end

-- The supervisor: the one child of worker 1 (the process the spec started).
local function supervisor_of(pid)
	local p = io.popen(("ps --ppid %d -o pid="):format(pid))
	local child = tonumber(p:read("*a"):match("%d+"))
	p:close()
	return child
end

-- Processes under `pid` (children and grandchildren) that are zombies, as "pid stat".
local function zombies_under(pid)
	local found = {}
	local p = io.popen("ps -e -o pid=,ppid=,stat=")
	local parent_of, stat_of = {}, {}
	for line in p:lines() do
		local child, parent, stat = line:match("^%s*(%d+)%s+(%d+)%s+(%S+)")
		parent_of[child], stat_of[child] = parent, stat
	end
	p:close()
	for child, parent in pairs(parent_of) do
		if (parent == tostring(pid) or parent_of[parent] == tostring(pid)) and stat_of[child]:find("Z") then
			found[#found + 1] = child .. " " .. stat_of[child]
		end
	end
	return found
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

	it("stops every worker and their supervisor on SIGTERM, each worker closing its connections with 1001", function()
		local s = helper.start_server({ workers = 2 })
		local by_worker = one_per_worker(s.port)
		local worker2 = pid_of(by_worker[2])
		local supervisor = supervisor_of(s.pid)
		s.stop("TERM")
		for n = 1, 2 do
			by_worker[n]:settimeout(10)
			assert.are.equal(1001, (helper.read_close(by_worker[n])), "worker " .. n)
			by_worker[n]:close()
		end
		assert.is_false(alive(worker2), "worker 2 outlived the server")
		assert.is_false(alive(supervisor), "the supervisor outlived the server")
	end)
end)

describe("a server with workers = 2 whose worker dies", function()
	after_each(helper.stop_all)

	it("logs a worker killed with SIGKILL (number, pid, signal), drops its counters at once, and starts a replacement that runs worker_init again",
		function()
			local s = helper.start_server({ workers = 2, worker_init = "handlers.worker_init" })
			local by_worker = one_per_worker(s.port)
			local held = { by_worker[2] }
			while #held < 4 do -- three more connections in worker 2, so that its counters show
				local sock = helper.open(s.port, "/pubsub")
				if ask(sock, "worker") == "worker 2 of 2" then
					held[#held + 1] = sock
				else
					sock:close()
				end
			end
			assert(helper.eventually(function()
				return open_of(by_worker[1]) == 5
			end, 5), "worker 1 counts the 4 connections of worker 2 and its own")
			local dead = pid_of(by_worker[2])
			os.execute("kill -9 " .. dead)
			assert(helper.eventually(function()
				return helper.read_file(s.log):find(("worker 2 (pid %d) was killed by signal 9"):format(dead), 1, true)
			end, 5), helper.read_file(s.log))
			assert(helper.eventually(function()
				return open_of(by_worker[1]) == 1
			end, 5), "the dead worker's counters are still added: " .. open_of(by_worker[1]))
			local replacement = assert(connection_in_worker(s.port, 2, 10), "no replacement of worker 2")
			assert.are_not.equal(dead, pid_of(replacement))
			assert.are.equal("init true", ask(replacement, "init"))
			assert.are.equal("subscribed news", ask(replacement, "sub news"))
			assert.are.equal("published 0", ask(by_worker[1], "pub news to the replacement"))
			replacement:settimeout(5)
			assert.are.equal("to the replacement", helper.read_frame(replacement).payload)
			assert.are.same({}, zombies_under(s.pid))
			for _, sock in ipairs(held) do
				sock:close()
			end
		end)

	it("backs off a worker that keeps crashing: replacements wait 1 s, then 2 s, ...; one that starts cleanly serves again", function()
		local marker = os.tmpname()
		os.remove(marker)
		local s = helper.start_server({ workers = 2, worker_init = "handlers.crashing_init" }, nil, { WS_CRASH_IF = marker })
		local by_worker = one_per_worker(s.port)
		assert(io.open(marker, "w")):close()
		os.execute("kill -9 " .. pid_of(by_worker[2]))
		assert(helper.eventually(function()
			return helper.read_file(s.log):find("starting a replacement in 2 s", 1, true)
		end, 10), helper.read_file(s.log))
		local log = helper.read_file(s.log)
		assert.matches("worker 2 %(pid %d+%) exited with status 3 after [%d.]+ s; starting a replacement in 1 s", log)
		os.remove(marker)
		assert(connection_in_worker(s.port, 2, 15), "no worker 2 after the crash loop ended")
		assert.are.same({}, zombies_under(s.pid))
	end)
end)
