-- One conformance table, every runtime: the cases of spec/support/conformance_cases.py
-- (Python's websockets and raw sockets as the client) against the app in
-- spec/support/conformance_app, served
--  * by the standalone server (ws.server), on every Lua;
--  * by the stand-in of evluaserver's `platform` global (spec/support/platform.lua), on
--    every machine: a new socket userdata per call, every module loaded afresh per
--    dispatch, strict argument checks, a read-error loop that fails the run; and
--  * by the real evluaserver of the kit in ../shared/tools/evluaserver (or
--    $EVLUASERVER_KIT), when it is there, with enableluafilecache false and true and 1, 2
--    and 4 worker threads; with the kit's own cases too.
-- Every case runs twice: with handler classes that define every hook, and with classes that
-- define handle_message only (spec/support/conformance_app/ws_plain), as every handler
-- written for the original module does.
-- A behaviour that drifts between the runtimes fails here.
local helper = require("spec.support.helper")

-- {name, description} of each case a script lists with `args` (a line "name<TAB>description"
-- or just "name").
local function cases_of(script, args)
	local list = {}
	for _, line in ipairs(helper.lines_of(("%s %s %s"):format(helper.PYTHON, script, args))) do
		local name, description = line:match("^(%S+)\t(.+)$")
		name = name or line:match("^([%w_]+)$")
		assert(name, "unexpected line from " .. script .. " " .. args .. ": " .. line)
		list[#list + 1] = { name, description or ("passes the kit's case " .. name) }
	end
	assert(#list > 0, script .. " lists no cases")
	return list
end

-- name -> "PASS ..." | "FAIL ..." from a case run's output, and the whole output.
local function results_of(text)
	local by_name = {}
	for line in text:gmatch("[^\n]+") do
		local verdict, name = line:match("^(%u+) ([^:]+):")
		if verdict == "PASS" or verdict == "FAIL" then
			by_name[name] = line
		end
	end
	return by_name, text
end

-- One `it` per case, each checking the verdict `results()` holds for it.
local function it_passes_each(cases, results)
	for _, case in ipairs(cases) do
		it(case[2], function()
			local by_name, all = results()
			local line = by_name[case[1]]
			assert(line ~= nil, "no verdict for " .. case[1] .. " in:\n" .. all)
			assert(line:match("^PASS "), line)
		end)
	end
end

local CASES = cases_of("spec/support/conformance_cases.py", "--list")

-- The two kinds of handler class the cases run with (conformance_cases.py --hooks).
local HOOKS = { { "all", "with handler classes defining every hook" },
	{ "message", "with handler classes defining handle_message only (as the original's)" } }

-- Runs the cases against the server on `port` with handler classes of kind `hooks`; their
-- verdicts (see results_of).
local function run_cases(port, log, hooks)
	local lines = helper.lines_of(("timeout 300 %s spec/support/conformance_cases.py --port %d --log %s --timeout 3 --hooks %s"):format(
		helper.PYTHON, port, log, hooks))
	local text = table.concat(lines, "\n")
	return function() return results_of(text) end
end

-- One describe per kind of handler class, each running the cases against `port()` once.
local function it_passes_each_with_both_kinds(port, log)
	for _, hooks in ipairs(HOOKS) do
		describe(hooks[2], function()
			local results
			setup(function() results = run_cases(port(), log(), hooks[1]) end)
			it_passes_each(CASES, function() return results() end)
		end)
	end
end

-- A fresh, empty handler log in spec/artifacts.
local function handler_log(name)
	local log = ("%s/%s-handler-%d.log"):format(helper.ARTIFACTS, name, os.time())
	io.open(log, "w"):close()
	return log
end

describe("on the standalone server", function()
	local server, log
	setup(function()
		log = handler_log("standalone")
		server = helper.start_server({ handler_base = "" }, nil, { WS_TEST_LOG = log })
	end)
	teardown(function() server.stop(); helper.stop_all() end)

	it_passes_each_with_both_kinds(function() return server.port end, function() return log end)
end)

if _VERSION == "Lua 5.1" then
	describe("under evluaserver", function()
		pending("evluaserver runs Lua 5.3: its runtime is tested on 5.3 and 5.4, not on 5.1 or LuaJIT")
	end)
	return
end

describe("under the evluaserver stand-in", function()
	local server, log
	setup(function()
		log = handler_log("standin")
		server = helper.start_process(('WS_TEST_LOG="%s" LUA_CPATH="%s/?.so;;" exec %s spec/support/evl_server.lua serve'):format(
			log, helper.CPATH_ROOT, helper.LUA), "evl_standin")
	end)
	teardown(function() server.stop(); helper.stop_all() end)

	it_passes_each_with_both_kinds(function() return server.port end, function() return log end)

	it("loses a handler's module-level state between frames, as evluaserver does (use topics)", function()
		local a = helper.open(server.port, "/ws_spec/members")
		local b = helper.open(server.port, "/ws_spec/members")
		a:send(helper.frame(helper.OP.TEXT, "anyone?"))
		assert.are.equal("MEMBERS 0", helper.read_frame(a).payload)
		a:close()
		b:close()
	end)

	it("refuses ws.publish from inside an upgrade (handle_open) with a message: 1011, and the server keeps serving", function()
		local c = helper.open(server.port, "/ws_spec/herald?room=refused")
		c:send(helper.frame(helper.OP.TEXT, "hello"))
		local f = helper.read_frame(c)
		assert.are.equal(helper.OP.CLOSE, f.opcode)
		assert.are.equal(1011, f.payload:byte(1) * 256 + f.payload:byte(2))
		c:close()
		assert.truthy(helper.read_file(server.log):find("ws.publish: under evluaserver, publish from handle_message, not from inside an upgrade", 1, true),
			helper.read_file(server.log))
		local e = helper.open(server.port, "/ws_spec/echo")
		e:send(helper.frame(helper.OP.TEXT, "still here"))
		assert.are.equal("still here", helper.read_frame(e).payload)
		e:close()
	end)

	it("never dispatches a socket again and again (the stand-in exits on a read-error loop)", function()
		assert.is_true(server.alive(), helper.read_file(server.log))
	end)
end)

describe("under the evluaserver stand-in, a script as the client (ws.connect through platform.*, ws_util)", function()
	after_each(helper.stop_all)

	it("connects, exchanges, pings, pools, closes, returns handshake failures as nil, message, and honours or refuses each input", function()
		local target = helper.start_server()
		local bad = helper.start_python("bad", "no-accept")
		helper.all_ok(helper.lines_of(('LUA_CPATH="%s/?.so;;" timeout 60 %s spec/support/evl_server.lua client '
			.. 'ws://127.0.0.1:%d ws://127.0.0.1:%d/x'):format(
			helper.CPATH_ROOT, helper.LUA, target.port, bad.port)), 35)
		target.stop()
		bad.stop()
	end)
end)

local KIT = os.getenv("EVLUASERVER_KIT") or "../shared/tools/evluaserver"
local function kit_present()
	local f = io.open(KIT .. "/evluaserver.tar.xz")
	if f then
		f:close()
	end
	return f ~= nil
end

if _VERSION ~= "Lua 5.3" then
	describe("inside the real evluaserver", function()
		pending("evluaserver loads the Lua 5.3 build: these cases run in the Lua 5.3 pass")
	end)
elseif not kit_present() then
	describe("inside the real evluaserver", function()
		pending("SKIP: no evluaserver kit at " .. KIT .. " (set EVLUASERVER_KIT): tested under the stand-in only")
	end)
else
	local KIT_CASES = cases_of(KIT .. "/app/ws_client_test.py", "--port 0 --list")
	for _, config in ipairs({ { "false", 2 }, { "true", 2 }, { "true", 1 }, { "false", 4 } }) do
		local cache, threads = config[1], config[2]
		describe(("inside the real evluaserver (enableluafilecache = %s, %d worker threads)"):format(cache, threads), function()
			local out = ("%s/evluaserver-%s-%d"):format(helper.ARTIFACTS, cache, threads)
			local function file(name)
				local f = io.open(out .. "/" .. name)
				local text = f and f:read("*a") or ("(no " .. out .. "/" .. name .. ")")
				if f then
					f:close()
				end
				return text
			end
			setup(function()
				os.execute("rm -rf " .. out)
				helper.lines_of(("timeout 900 bash spec/support/real_evluaserver.sh %s %s %s %s %d"):format(
					KIT, helper.CPATH_ROOT, out, cache, threads))
			end)

			for _, hooks in ipairs(HOOKS) do
				describe("the project's cases " .. hooks[2], function()
					it_passes_each(CASES, function() return results_of(file("cases-" .. hooks[1] .. ".txt")) end)
				end)
			end
			describe("the kit's own cases", function()
				it_passes_each(KIT_CASES, function() return results_of(file("kit.txt")) end)
			end)
			describe("under load", function()
				it("holds 200 connections opened together (20 handshakes under way at a time) and echoes on each", function()
					local by_name, all = results_of(file("load.txt"))
					assert(by_name.many and by_name.many:match("^PASS "), all)
				end)
				if cache == "true" then
					it("serves 10 clients x 50 echoes within 5 s while another client sends its handshake a byte every 0.5 s", function()
						local by_name, all = results_of(file("load.txt"))
						assert(by_name.slowloris and by_name.slowloris:match("^PASS "), all)
					end)
				else
					pending("10 clients x 50 echoes within 5 s during a slow handshake: with enableluafilecache = false evluaserver "
						.. "builds a fresh Lua state for every frame (about 40 ms of a worker thread each, the module's share about 3%): "
						.. "500 echoes take about 10 s on 2 threads (docs/evluaserver.md)")
				end
			end)
			it("is idle after the cases (no socket dispatched again and again)", function()
				assert.are.equal("idle\n", file("idle.txt"))
			end)
		end)
	end
end
