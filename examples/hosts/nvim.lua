-- A WebSocket client inside Neovim: the module runs in Neovim's own loop (vim.uv,
-- vim.loop before 0.10) while the editor stays responsive; a Neovim timer of the plugin's
-- own keeps its cadence meanwhile. Messages arrive in a coroutine of the module's loop
-- (ws.spawn), where recv waits without blocking the editor. Callbacks of the module run
-- in a "fast" context of Neovim: to touch the editor from them, use vim.schedule.
--
--   WS_URL=ws://127.0.0.1:8080/echo nvim --headless -u NONE -c "luafile examples/hosts/nvim.lua"
--
-- with the LuaJIT build of the module on LUA_CPATH (Neovim runs LuaJIT). It sends
-- WS_MESSAGES (default 1000) messages of 1 KiB, checks every echo, closes, writes a report
-- to WS_REPORT (default stdout) and quits Neovim.
-- luacheck: read globals vim
local ws = require("service_utils.WS.web_socket")
local uv = vim.uv or vim.loop

local url = assert(os.getenv("WS_URL"), "set WS_URL")
local count = tonumber(os.getenv("WS_MESSAGES") or "1000")
local driver = ws.hosts.luv(uv)

-- The plugin's own work: a 10 ms Neovim timer, timed while the exchange runs.
local ticks, longest, last = 0, 0, nil
local timer = uv.new_timer()
timer:start(10, 10, function()
	uv.update_time()
	local now = uv.now()
	ticks = ticks + 1
	longest = math.max(longest, now - (last or now))
	last = now
end)

local function finish(report)
	timer:stop()
	timer:close()
	driver.stop()
	local path = os.getenv("WS_REPORT")
	local out = path and assert(io.open(path, "w")) or io.stdout
	out:write(report, "\n")
	out:close()
	vim.schedule(function()
		vim.cmd("qall!")
	end)
end

ws.spawn(function()
	local conn, err = ws.connect({ url = url, hdrs = {}, external = false, timeout = 5 })
	if not conn then
		return finish("error: " .. tostring(err))
	end
	local payload, echoed = ("n"):rep(1024), 0
	for _ = 1, count do
		assert(conn:send(payload))
		local msg = conn:recv(5)
		if msg and msg.data == payload then
			echoed = echoed + 1
		end
	end
	conn:close()
	local _, why, code = conn:recv(5)
	finish(("echoed %d of %d; closed: %s %s; timer: %d ticks, longest gap %d ms"):format(
		echoed, count, tostring(why), tostring(code), ticks, longest))
end)
