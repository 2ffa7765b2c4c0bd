-- Runs the module under the evluaserver stand-in (spec/support/platform.lua):
--   LUA spec/support/evl_server.lua serve
--       the REST controller's ws.accept + ws.handle_msg for spec/support/conformance_app (/ws/echo ...)
--   LUA spec/support/evl_server.lua client URL BAD_URL
--       ws.connect through platform.* from a script: one "ok"/"FAIL" line per check
-- The `platform` global is set before the module is required, as evluaserver does.
package.path = "spec/support/?.lua;spec/support/conformance_app/?.lua;" .. package.path
local standin = require("platform")
platform = standin.platform -- luacheck: ignore (the global evluaserver provides)

local function check(what, cond, detail)
	print((cond and "ok " or "FAIL ") .. what .. (cond and "" or (": " .. tostring(detail))))
	io.stdout:flush()
end

local function client(url, bad_url)
	local ws = require("service_utils.WS.web_socket")
	local ws_util = require("service_utils.WS.ws_util")
	local conn, status, hdrs = ws.connect({ url = url .. "/proto?x=1", hdrs = { ["User-Agent"] = "evl" }, external = false, timeout = 5 })
	check("connect returns conn, 101, headers", conn ~= nil and status == 101 and type(hdrs) == "table", status)
	check("the query is sent", hdrs["X-Uc-Query"] == "x=1" or hdrs["x-uc-query"] == "x=1", hdrs["X-Uc-Query"])
	check("connection fields", conn._ss ~= nil and conn.ss == conn._ss and conn.host == "127.0.0.1" and conn.is_TLS == false)
	check("connect went through platform.make_http_connection", (standin.calls.make_http_connection or 0) >= 1)
	ws_util.send_msg(conn, "bin\0ary\0", { msg_type = "BINARY" })
	local msg = ws_util.recv_frame(conn)
	check("binary with NUL bytes round-trips", msg and msg.data == "bin\0ary\0" and msg.payload_len == 8, msg and msg.data)
	ws_util.send_msg(conn, "", { msg_type = "TEXT" })
	msg = ws_util.recv_frame(conn)
	check("an empty text message round-trips", msg and msg.data == "" and msg.op_code == 1)
	check("ping is sent", ws_util.ping(conn, "p") == true)
	conn:send("after ping")
	msg = conn:recv()
	check("the pong is skipped and the next message read", msg and msg.data == "after ping", msg and msg.data)
	check("client frames go out through send_data_on_socket", (standin.calls.send_data_on_socket or 0) >= 4)
	ws_util.add_ws_to_pool(conn, "evl-pool")
	check("the pool hands out an open connection", ws_util.get_ws_from_pool("evl-pool") ~= nil)
	ws_util.close(conn, 1000, "done")
	check("the pool drops a closed one (and does not spin)", ws_util.get_ws_from_pool("evl-pool") == nil)
	check("the module holds no connection after the close", ws.open_connections() == 0, ws.open_connections())

	local none, why, kind = ws.connect({ url = bad_url, hdrs = {}, external = false, timeout = 5 })
	check("a missing Sec-WebSocket-Accept is returned, not raised, of kind handshake", none == nil
		and why == "Invalid or missing Sec-WebSocket-Accept header in handshake response" and kind == "handshake", why)
	none, why, kind = ws.connect({ url = "ws://127.0.0.1:1/x", hdrs = {}, external = false, timeout = 2 })
	check("a refused connection is returned as nil, message, kind",
		none == nil and type(why) == "string" and kind == "io", tostring(why) .. " " .. tostring(kind))
	-- Every input is honoured or refused with a message naming it, never ignored.
	local refused = { proxy = "http://p:1", reconnect = true, ca_file = "/etc/ssl/ca.pem", verify = false, max_frame_size = 1024,
		send_buffer = 4096, send_timeout = 5, ping_interval = 10, pong_timeout = 5, idle_timeout = 60 }
	for name, value in pairs(refused) do
		local ok, err = pcall(ws.connect, { url = "ws://127.0.0.1:1/x", hdrs = {}, external = false, [name] = value })
		check(("inputs.%s is refused, not ignored"):format(name),
			not ok and tostring(err):find(("inputs.%s is not supported under evluaserver ("):format(name), 1, true), tostring(err))
	end
	local _, _, h = ws.connect({ url = url .. "/proto", hdrs = {}, external = false, timeout = 5,
		credentials = { username = "user", password = "pass" } })
	check("inputs.credentials is sent as Basic authorization (RFC 7617)",
		h and (h["X-Uc-Authorization"] or h["x-uc-authorization"]) == "Basic dXNlcjpwYXNz", h and h["X-Uc-Authorization"])
	_, _, h = ws.connect({ url = url .. "/proto", hdrs = { Authorization = "Bearer t" }, external = false, timeout = 5,
		credentials = { username = "user", password = "pass" } })
	check("an Authorization header in inputs.hdrs wins over inputs.credentials",
		h and (h["X-Uc-Authorization"] or h["x-uc-authorization"]) == "Bearer t", h and h["X-Uc-Authorization"])
	local small = ws.connect({ url = url .. "/echo", hdrs = {}, external = false, timeout = 5, max_message_size = 10 })
	small:send(("x"):rep(20))
	local got, ended, code, reason = small:recv(5)
	check("inputs.max_message_size is honoured: a longer answer ends the connection (as standalone: 1006, the limit named)",
		got == nil and ended == "closed" and code == 1006 and reason == "frame larger than the configured maximum",
		tostring(ended) .. " " .. tostring(code) .. " " .. tostring(reason))
	local ok, err = pcall(ws.connect, { url = url, hdrs = {}, external = false, max_message_size = 0 })
	check("a bad inputs.max_message_size is refused with the standalone runtime's message",
		not ok and tostring(err):find("connect: inputs.max_message_size must be a whole number from 1 to", 1, true), tostring(err))
	ok, err = pcall(ws.connect, { url = url, hdrs = {}, external = false, close_timeout = "soon" })
	check("a bad inputs.close_timeout is refused with the standalone runtime's message",
		not ok and tostring(err):find("connect: inputs.close_timeout must be a number of seconds >= 0", 1, true), tostring(err))
	ok, err = pcall(ws.connect, { url = url, hdrs = {}, external = false, retries = 3 })
	check("an input no runtime knows is refused with a message naming it",
		not ok and tostring(err):find("connect: inputs.retries is not an input of ws.connect", 1, true), tostring(err))
	ok, err = pcall(ws.sleep, 0.01)
	check("ws.sleep is refused under evluaserver (it would hold a worker thread)",
		not ok and tostring(err):find("ws.sleep is not supported under evluaserver", 1, true), tostring(err))
	ok, err = pcall(ws.server, { port = 0, handler_base = "" })
	check("ws.server is refused under evluaserver",
		not ok and tostring(err):find("ws.server is not supported under evluaserver", 1, true), tostring(err))
	for _, name in ipairs({ "step", "pollfd", "timeout", "spawn" }) do
		ok, err = pcall(ws[name], 0)
		check(("ws.%s is refused under evluaserver (it runs the event loop)"):format(name),
			not ok and tostring(err):find(("ws.%s is not supported under evluaserver"):format(name), 1, true), tostring(err))
	end
end

if arg[1] == "serve" then
	local port = standin.listen()
	print(("listening on ws://127.0.0.1:%d"):format(port))
	io.stdout:flush()
	standin.run(function() return false end)
elseif arg[1] == "client" then
	local done = false
	local task = standin.script(function() client(arg[2], arg[3]) end)
	task.on_done = function() done = true end
	task.on_error = function(e) check("client scenario ran to the end", false, e); done = true end
	standin.run(function() return done end)
else
	io.stderr:write("usage: evl_server.lua serve | client URL BAD_URL\n")
	os.exit(2)
end
