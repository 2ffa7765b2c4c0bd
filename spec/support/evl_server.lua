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
	local ok, err = pcall(ws.connect, { url = "ws://127.0.0.1:1/x", hdrs = {}, external = false, proxy = "http://p:1" })
	check("a proxy is refused, not ignored", not ok and tostring(err):find("inputs.proxy is not supported under evluaserver", 1, true),
		tostring(err))
	ok, err = pcall(ws.connect, { url = "ws://127.0.0.1:1/x", hdrs = {}, external = false, reconnect = true })
	check("reconnect is refused, not ignored", not ok and tostring(err):find("inputs.reconnect is not supported", 1, true),
		tostring(err))
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
