-- service_utils/WS/hosts.lua: the module's event loop run inside another program's loop.
--
-- Each adapter waits the way its host waits — on `ws.pollfd()` (readable whenever the
-- module has work) and for `ws.timeout()` (seconds until its next timer) — and then calls
-- `ws.step(0)`, which runs what is ready and returns. Each returns a driver whose
-- `stop()` detaches it. A game loop needs no adapter: call `ws.step(0)` once per frame.
local ws = ...

local hosts = {}

-- Milliseconds for a host timer: at least 1 (a timer of 0 ms would spin), rounded up.
local function millis(seconds)
	return math.max(1, math.ceil(seconds * 1000))
end

-- luv (libuv; `vim.uv` / `vim.loop` in Neovim): a poll handle on the descriptor and a
-- one-shot timer re-armed for the next timer after every step.
function hosts.luv(uv)
	local poll = uv.new_poll(ws.pollfd())
	local timer = uv.new_timer()
	local function run()
		local more = ws.step(0)
		local wait = more and 0 or ws.timeout()
		timer:stop()
		if wait then
			timer:start(millis(wait), 0, run)
		end
	end
	poll:start("r", run)
	run()
	return {
		stop = function()
			poll:stop()
			timer:stop()
			poll:close()
			timer:close()
		end,
	}
end

-- The module's descriptor as an object hosts wait on: cqueues (`cqueues.poll`: pollfd,
-- events, timeout) and LuaSocket's `socket.select`, which copas uses (getfd, dirty).
function hosts.pollable()
	local fd = ws.pollfd()
	return {
		pollfd = function()
			return fd
		end,
		events = function()
			return "r"
		end,
		timeout = function()
			return ws.timeout()
		end,
		getfd = function()
			return fd
		end,
		dirty = function()
			return false
		end,
	}
end

-- cqueues (and lua-http on it): a coroutine on the controller `cq` that waits on the
-- pollable (or for `stop`) and steps.
function hosts.cqueues(cq)
	local cqueues = require("cqueues")
	local stopping = require("cqueues.condition").new()
	local pollable = hosts.pollable()
	local running = true
	cq:wrap(function()
		while running do
			if not ws.step(0) then
				cqueues.poll(pollable, stopping)
			end
		end
	end)
	return {
		stop = function()
			running = false
			stopping:signal()
		end,
	}
end

-- copas: a copas thread that copas's select wakes when the descriptor is readable (a
-- socket-like object whose receive says "timeout" once per wait), and `loop`/`step` to
-- use instead of copas's, so that the module's timers run too (copas 1.x has none).
function hosts.copas(copas)
	local waker, waited = hosts.pollable(), false
	function waker.settimeout() end
	function waker.receive()
		waited = not waited
		if waited then
			return nil, "timeout"
		end
		return ""
	end
	local running = true
	copas.addthread(function()
		while running do
			copas.receive(waker)
			ws.step(0)
		end
	end)
	local driver = {}
	-- One round of copas and the module: waits at most `max_wait` seconds (default 1).
	function driver.step(max_wait)
		local wait = ws.timeout() or max_wait or 1
		copas.step(math.min(wait, max_wait or 1))
		ws.step(0)
	end
	-- Rounds until `until_fn()` says true (default: forever).
	function driver.loop(until_fn, max_wait)
		while running and not (until_fn and until_fn()) do
			driver.step(max_wait)
		end
	end
	function driver.stop()
		running = false
	end
	return driver
end

return hosts
