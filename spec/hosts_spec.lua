-- The module driven from someone else's event loop (ws.step, ws.pollfd, ws.timeout,
-- ws.spawn; lua/hosts.lua): first in this process, with LuaSocket's select standing in for
-- a host's poll; then the real hosts from Debian's packages, each running one of
-- examples/hosts/*.lua as a child process: luv, Neovim (its LuaJIT and vim.loop),
-- cqueues next to lua-http, copas next to a copas TCP server. Python's websockets is the
-- peer, so the module is never checked against itself.
local helper = require("spec.support.helper")
local socket = require("socket")
local ws = require("service_utils.WS.web_socket")

-- Handler modules of the in-process server, reached through `routes`.
package.loaded["hosts_spec.echo"] = {
	handle_message = function(msg)
		msg.conn:send(msg.data)
	end,
}
package.loaded["hosts_spec.sleepy"] = {
	handle_message = function(msg)
		ws.sleep(tonumber(msg.data))
		msg.conn:send("slept")
	end,
}
package.loaded["hosts_spec.stepper"] = {
	handle_message = function(msg)
		local ok, err = pcall(ws.step, 0)
		msg.conn:send(ok and "stepped" or tostring(err))
	end,
}

-- Whether `obj` (a socket or ws.hosts.pollable()) is readable within `seconds`.
local function readable(obj, seconds)
	local r = socket.select({ obj }, nil, seconds)
	return #r == 1
end

-- Steps the module until `pred()` holds; at most 500 rounds of 10 ms.
local function step_until(pred)
	for _ = 1, 500 do
		if pred() then
			return true
		end
		ws.step(0.01)
	end
	return pred()
end

-- A raw client's next frame, read while the module is stepped (the client and the server
-- share this thread: a blocking read would wait for a server that cannot run).
local function next_frame(sock)
	assert(step_until(function()
		return readable(sock, 0)
	end), "no frame arrived")
	return helper.read_frame(sock)
end

-- A WebSocket opened on the in-process server at `path`, stepping it meanwhile.
local function open(port, path)
	local sock = helper.tcp(port)
	assert(sock:send(helper.upgrade_request(path)))
	assert(step_until(function()
		return readable(sock, 0)
	end), "no answer to the upgrade")
	local res = assert(helper.read_response(sock))
	assert.are.equal(101, res.status)
	return sock
end

describe("ws.step / ws.pollfd / ws.timeout: the module's loop run by the caller", function()
	local server
	before_each(function()
		server = ws.server({
			host = "127.0.0.1",
			port = 0,
			routes = { ["/echo"] = "hosts_spec.echo", ["/sleepy"] = "hosts_spec.sleepy", ["/stepper"] = "hosts_spec.stepper" },
		})
	end)
	after_each(function()
		server:stop(1)
		step_until(function()
			return ws.open_connections() == 0
		end)
	end)

	it("makes ws.pollfd() readable when a client knocks, and answers its upgrade in ws.step(0), without server:run()", function()
		local sock = helper.tcp(server.port)
		assert(sock:send(helper.upgrade_request("/echo")))
		assert.is_true(readable(ws.hosts.pollable(), 5))
		assert(step_until(function()
			return readable(sock, 0)
		end))
		assert.are.equal(101, helper.read_response(sock).status)
		sock:send(helper.frame(helper.OP.TEXT, "stepped"))
		assert.are.equal("stepped", next_frame(sock).payload)
		sock:close()
	end)

	it("suspends only the handler that calls ws.sleep: another connection is served meanwhile, and ws.timeout() says when the sleep ends", function()
		local sleeper, other = open(server.port, "/sleepy"), open(server.port, "/echo")
		sleeper:send(helper.frame(helper.OP.TEXT, "0.5"))
		assert(step_until(function()
			local t = ws.timeout()
			return t ~= nil and t <= 0.502 and t > 0.3
		end), "ws.timeout() did not report the sleep: " .. tostring(ws.timeout()))
		other:send(helper.frame(helper.OP.TEXT, "while it sleeps"))
		assert.are.equal("while it sleeps", next_frame(other).payload)
		assert.is_false(readable(sleeper, 0))
		assert.are.equal("slept", next_frame(sleeper).payload)
		sleeper:close()
		other:close()
	end)

	it("makes the descriptor readable when work is queued from outside the loop (a send from the main chunk)", function()
		local conn = assert(helper.connect(("ws://127.0.0.1:%d/echo"):format(server.port)))
		ws.step(0.05)
		assert.is_false(readable(ws.hosts.pollable(), 0))
		assert(conn:send("from the main chunk"))
		assert.is_true(readable(ws.hosts.pollable(), 5))
		assert.are.equal("from the main chunk", conn:recv(5).data)
		conn:close()
	end)

	it("runs ws.spawn's function as a coroutine of the loop: ws.connect and recv in it wait without blocking the caller", function()
		local got
		ws.spawn(function(url)
			local conn = assert(ws.connect({ url = url, hdrs = {}, external = false, timeout = 5 }))
			conn:send("spawned")
			got = conn:recv(5).data
			conn:close()
		end, ("ws://127.0.0.1:%d/echo"):format(server.port))
		assert.is_nil(got)
		assert.is_true(step_until(function()
			return got ~= nil
		end))
		assert.are.equal("spawned", got)
	end)

	it("runs the loop for the whole of ws.step(timeout): a spawned ws.sleep(0.1) ends within ws.step(0.3)", function()
		local woke = false
		ws.spawn(function()
			ws.sleep(0.1)
			woke = true
		end)
		ws.step(0.3)
		assert.is_true(woke)
	end)

	it("refuses ws.step inside a handler with a message (the loop is already running)", function()
		local sock = open(server.port, "/stepper")
		sock:send(helper.frame(helper.OP.TEXT, "step"))
		assert.matches("ws.step: cannot wait here: already inside the event loop", next_frame(sock).payload, 1, true)
		sock:close()
	end)

	it("leaves no timer due on an idle connection: ws.timeout() is its keepalive's, seconds away (a host does not spin)", function()
		local sock = open(server.port, "/echo")
		sock:send(helper.frame(helper.OP.TEXT, "once"))
		assert.are.equal("once", next_frame(sock).payload)
		ws.step(0.05)
		assert.is_true(ws.timeout() > 1, tostring(ws.timeout()))
		assert.is_false(readable(ws.hosts.pollable(), 0))
		sock:close()
	end)
end)

-- Whether `lua` can load every module in `modules`.
local function has_modules(lua, modules)
	local probe = {}
	for _, m in ipairs(modules) do
		probe[#probe + 1] = ('require "%s"'):format(m)
	end
	return helper.exec_ok(("%s -e '%s' >/dev/null 2>&1"):format(lua, table.concat(probe, "; ")))
end

-- Starts examples/hosts/NAME.lua in `once` mode on this pass's Lua; returns the process
-- record and the lines it printed after its "listening on" line (`extra` of them).
local function start_host(name, extra)
	local host = helper.start_process(('LUA_CPATH="%s/?.so;;" exec %s examples/hosts/%s.lua 0 once'):format(
		helper.CPATH_ROOT, helper.LUA, name), "host-" .. name)
	local lines = {}
	for i = 1, extra or 0 do
		lines[i] = host.out:read("*l")
	end
	return host, lines
end

-- The host program's report after its client left: ticks and longest gap of its timer.
local function timer_report(host)
	local rest = host.out:read("*a")
	local ticks, gap = rest:match("timer: (%d+) ticks while connected, longest gap (%d+) ms")
	assert(ticks, "no timer report:\n" .. rest .. "\n" .. helper.read_file(host.log))
	return tonumber(ticks), tonumber(gap)
end

-- The host's timer kept firing while 1,000 messages flowed (ticks) and never stalled long
-- (a stall detector far above its 10 ms period: the figures themselves are printed).
local function assert_cadence(what, ticks, gap)
	print(("\n%s on %s: host timer ticked %d times while connected, longest gap %d ms"):format(what, helper.LUA, ticks, gap))
	assert.is_true(ticks >= 2, "the host's timer did not run while messages flowed")
	assert.is_true(gap < 250, "the host's timer stalled for " .. gap .. " ms")
end

describe("inside a host's event loop (examples/hosts)", function()
	after_each(helper.stop_all)

	it("luv: serves 1,000 echoes and a clean close to Python's websockets while a luv timer keeps its cadence", function()
		if not has_modules(helper.LUA, { "luv" }) then
			pending("Debian's lua-luv is not installed for " .. helper.LUA)
			return
		end
		local host = start_host("luv")
		helper.all_ok(helper.python("flow", host.port, 1000), 2)
		assert_cadence("luv", timer_report(host))
	end)

	it("cqueues: lua-http's HTTP and the module's WebSocket in one thread, 1,000 echoes and a clean close, a cqueues timer on time", function()
		if not has_modules(helper.LUA, { "cqueues", "http.server" }) then
			pending("Debian 12's lua-http runs on Lua 5.1 and LuaJIT (lua-fifo): not on " .. helper.LUA)
			return
		end
		local host, lines = start_host("cqueues", 1)
		local http_port = assert(tonumber(lines[1]:match("http on http://127.0.0.1:(%d+)/")), lines[1])
		local sock = helper.tcp(http_port)
		sock:send("GET /from-the-spec HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		local answer = sock:receive("*a")
		sock:close()
		assert.matches("hello from lua-http: /from-the-spec", answer, 1, true)
		helper.all_ok(helper.python("flow", host.port, 1000), 2)
		assert_cadence("cqueues", timer_report(host))
	end)

	it("copas: a copas TCP server and the module's WebSocket in one thread, 1,000 echoes and a clean close, the loop's periodic work on time", function()
		if not has_modules(helper.LUA, { "copas" }) then
			pending("Debian 12's lua-copas runs on Lua 5.1 and LuaJIT: not on " .. helper.LUA)
			return
		end
		local host, lines = start_host("copas", 1)
		local tcp_port = assert(tonumber(lines[1]:match("tcp on 127.0.0.1:(%d+)")), lines[1])
		local sock = helper.tcp(tcp_port)
		sock:send("a line for copas\n")
		assert.are.equal("a line for copas", sock:receive("*l"))
		sock:close()
		helper.all_ok(helper.python("flow", host.port, 1000), 2)
		assert_cadence("copas", timer_report(host))
	end)

	it("Neovim (nvim --headless, vim.loop): a client exchanges 1,000 messages with Python's websockets, closes cleanly, a Neovim timer on time",
		function()
		if helper.LUA ~= "luajit" then
			pending("Neovim runs LuaJIT: this case runs in the LuaJIT pass")
			return
		elseif not helper.exec_ok("command -v nvim >/dev/null") then
			pending("nvim (Debian's neovim) is not installed")
			return
		end
		local peer = helper.start_python("echo")
		local report = os.tmpname()
		local rc = os.execute(('LUA_CPATH="%s/?.so;;" WS_URL=ws://127.0.0.1:%d/echo WS_REPORT=%s timeout 60 '
			.. 'nvim --headless -u NONE -c "luafile examples/hosts/nvim.lua" >/dev/null 2>&1'):format(
			helper.CPATH_ROOT, peer.port, report))
		local line = helper.read_file(report)
		os.remove(report)
		assert(rc == true or rc == 0, "nvim failed: " .. line)
		local echoed, why, code, ticks, gap = line:match("echoed (%d+) of 1000; closed: (%S+) (%S+); timer: (%d+) ticks, longest gap (%d+) ms")
		assert(echoed, line)
		assert.are.same({ "1000", "closed", "1000" }, { echoed, why, code })
		assert_cadence("Neovim", tonumber(ticks), tonumber(gap))
		peer.stop()
	end)
end)
