-- Hostile clients: what each attack that once worked does now. Bounds are asserted on
-- what the library itself counts (server:stats()), never on RSS or time.
local helper = require("spec.support.helper")
local socket = require("socket")
local OP = helper.OP

describe("under attack", function()
	after_each(helper.stop_all)

	it("survives large sends to a peer that has gone away (no SIGPIPE, no signal handler changed)", function()
		local server = helper.start_server()
		for _ = 1, 3 do
			local sock = helper.open(server.port, "/firehose")
			sock:send(helper.frame(OP.TEXT, "go"))
			-- Closed without reading: the server's first 64 KiB draws a reset, and its next
			-- writes meet EPIPE (the socket was half-closed: CLOSE_WAIT).
			sock:close()
		end
		-- Each handler says when its sends are done; a SIGPIPE would end the process first.
		assert.is_true(helper.eventually(function()
			local _, done = helper.read_file(server.log):gsub("firehose: sent", "")
			return done == 3 or not server.alive()
		end))
		assert.is_true(server.alive(), "the server died:\n" .. helper.read_file(server.log))
		local ignored = helper.read_file(("/proc/%d/status"):format(server.pid)):match("SigIgn:%s*(%x+)")
		-- SIGPIPE is signal 13: bit 12 of the ignored-signals mask (its 4th hex digit from
		-- the right) stays clear.
		assert.are.equal(0, math.floor(tonumber(ignored:sub(-4), 16) / 4096) % 2, "SIGPIPE is ignored: SigIgn " .. ignored)
		assert.is_true(helper.echoes(server.port))
		server.stop()
	end)
end)

-- Sends `frame` over and over for `seconds`; returns the bytes sent and whether the
-- server stopped taking them (20 tries in a row, a second, without a byte going out).
local function flood(sock, frame, seconds)
	sock:settimeout(0.05)
	local batch = string.rep(frame, 64)
	local deadline = socket.gettime() + seconds
	local sent, idle = 0, 0
	while socket.gettime() < deadline and idle < 20 do
		local last, err, partial = sock:send(batch)
		local n = last or partial or 0
		sent = sent + n
		idle = n > 0 and 0 or idle + 1
		if err == "closed" then
			break
		end
	end
	return sent, idle >= 20
end

describe("floods from peers that never read", function()
	after_each(helper.stop_all)

	it("a ping flood cannot queue more than send_buffer and one pong, and is no longer read once it has", function()
		local server = helper.start_server({ send_buffer = 65536 })
		local sock = helper.open(server.port, "/echo")
		local sent, stalled = flood(sock, helper.frame(OP.PING, string.rep("p", 125)), 10)
		assert.is_true(sent > 1024 * 1024, "the flood sent only " .. sent .. " bytes")
		-- TCP pushes back: the server stopped reading while its queue was over send_buffer.
		assert.is_true(stalled, "the server read all " .. sent .. " bytes of the flood")
		local most = helper.stat(server, "max_queued")
		assert.is_true(most <= 65536 + 2 * 131, "a connection queued " .. most .. " bytes")
		sock:close()
		server.stop()
	end)

	it("a flood of messages to an echo cannot queue more than send_buffer and one message", function()
		local server = helper.start_server({ send_buffer = 65536 })
		local sock = helper.open(server.port, "/echo")
		flood(sock, helper.frame(OP.BINARY, string.rep("m", 1024)), 2)
		local most = helper.stat(server, "max_queued")
		assert.is_true(most > 0 and most <= 65536 + 1024 + 4, "a connection queued " .. most .. " bytes")
		sock:close()
		server.stop()
	end)
end)

describe("static files under attack", function()
	local dir = ("%s/static-%d"):format(helper.ARTIFACTS, os.time())
	setup(function()
		assert(helper.exec_ok(("mkdir -p %s/sub && truncate -s 64M %s/big.bin && echo '<p>hi</p>' > %s/index.html"):format(dir, dir, dir)))
		assert(helper.exec_ok(("ln -sf /etc/passwd %s/passwd && ln -sfn /etc %s/sub/etc && ln -sf ../index.html %s/sub/alias.html"):format(dir, dir, dir)))
	end)
	teardown(function() os.execute("rm -rf " .. dir) end)
	after_each(helper.stop_all)

	local function get(port, path, headers)
		local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
		for k, v in pairs(headers or {}) do
			lines[#lines + 1] = k .. ": " .. v
		end
		return helper.raw_request(port, table.concat(lines, "\r\n") .. "\r\n\r\n")
	end

	it("refuses symlinks that lead out of the directory (404), serves those that stay inside", function()
		local server = helper.start_server({ static = dir })
		assert.are.equal(404, get(server.port, "/passwd").status)
		assert.are.equal(404, get(server.port, "/sub/etc/passwd").status)
		local inside = get(server.port, "/sub/alias.html")
		assert.are.equal(200, inside.status)
		assert.are.equal("<p>hi</p>\n", inside.body)
		server.stop()
	end)

	it("answers HEAD with the length and no body, and If-Modified-Since with 304", function()
		local server = helper.start_server({ static = dir })
		local sock = helper.tcp(server.port)
		sock:send("HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
		local head = {}
		repeat
			local line = assert(sock:receive("*l"))
			head[#head + 1] = line
		until line == ""
		head = table.concat(head, "\n")
		assert.matches("^HTTP/1%.1 200 OK\n", head)
		assert.matches("\nContent%-Length: 67108864\n", head)
		assert.matches("\nContent%-Type: application/octet%-stream\n", head)
		local rest, _, partial = sock:receive("*a")
		assert.are.equal("", rest or partial) -- not one byte of body, then the close
		local full = get(server.port, "/")
		assert.are.equal("text/html; charset=utf-8", full.headers["content-type"])
		local again = get(server.port, "/", { ["If-Modified-Since"] = full.headers["last-modified"] })
		assert.are.equal(304, again.status)
		assert.are.equal("", again.body)
		server.stop()
	end)

	it("cuts a download the client does not read within send_timeout, and counts it against max_connections", function()
		local server = helper.start_server({ static = dir, send_timeout = 1, max_connections = 2, log_level = "info" })
		local stalled = {}
		for i = 1, 2 do
			stalled[i] = helper.tcp(server.port)
			stalled[i]:setoption("keepalive", true)
			stalled[i]:send("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n") -- and never read
		end
		assert.are.equal(503, get(server.port, "/index.html").status)
		assert.is_true(helper.eventually(function()
			local _, n = helper.read_file(server.log):gsub("GET /big.bin %-> 200 %(cut off: not read within send_timeout%)", "")
			return n == 2
		end, 10), helper.read_file(server.log))
		assert.are.equal(200, get(server.port, "/index.html").status)
		for i = 1, 2 do
			stalled[i]:close()
		end
		server.stop()
	end)
end)

describe("out of descriptors", function()
	after_each(helper.stop_all)

	it("lowers max_connections to the descriptor limit and says so; answers 503 past it", function()
		local server = helper.start_process(('ulimit -n 64; LUA_CPATH="%s/?.so;;" exec env --default-signal=PIPE %s spec/support/server.lua'):format(
			helper.CPATH_ROOT, helper.LUA), "server")
		assert.is_true(helper.eventually(function()
			return helper.read_file(server.log):find("max_connections lowered from 10000 to 32: the descriptor limit (ulimit -n) is 64", 1, true) ~= nil
		end), helper.read_file(server.log))
		local open = {}
		for i = 1, 32 do
			open[i] = helper.open(server.port, "/echo")
		end
		assert.are.equal(503, helper.request(server.port, "/echo").status)
		for i = 1, 32 do
			open[i]:close()
		end
		server.stop()
	end)

	it("answers 503 from a reserve descriptor when a handler has taken every other one, logging once a second", function()
		local server = helper.start_process(('ulimit -n 64; LUA_CPATH="%s/?.so;;" exec env --default-signal=PIPE %s spec/support/server.lua'):format(
			helper.CPATH_ROOT, helper.LUA), "server")
		local hog = helper.open(server.port, "/hog")
		hog:send(helper.frame(OP.TEXT, "hog"))
		assert.is_true(tonumber(helper.read_frame(hog).payload) > 0)
		for _ = 1, 5 do
			local res = helper.raw_request(server.port, helper.upgrade_request("/echo"))
			assert.are.equal(503, res and res.status)
			assert.matches("out of file descriptors", res.body, 1, true)
		end
		hog:send(helper.frame(OP.TEXT, "free"))
		assert.are.equal("freed", helper.read_frame(hog).payload)
		assert.is_true(helper.eventually(function()
			local ok, sock = pcall(helper.open, server.port, "/echo")
			if ok then
				sock:close()
			end
			return ok
		end))
		local _, lines = helper.read_file(server.log):gsub("accept failed: ", "")
		assert.is_true(lines >= 1 and lines <= 3, lines .. " accept-failure lines:\n" .. helper.read_file(server.log))
		hog:close()
		server.stop()
	end)
end)
