-- /ws_spec/echo, written to the original service_utils.WS conventions (init, handle_message
-- replying through ws_util.send_msg with {_ss = msg._ss}); its commands exercise the rest:
--   CONNECT <port>     ws.connect to ws://127.0.0.1:<port>/, send, ws_util.recv_frame, reply
--   CONNECTCB <port>   the same with msg_handler = "ws_spec.client_cb": the answer goes there
--   POOLADD <name>     put this connection in pool <name>
--   POOLSEND <n> <t>   send <t> to a connection of pool <n> (from another connection)
--   CLOSE <code>       close this connection with <code>
--   LINKS              the number of connections the module holds in this process
--   COMPRESSED ...     "COMPRESSED <msg.compressed> <length>" (permessage-deflate)
-- Events are appended to the file named by WS_TEST_LOG.
local ws = require("service_utils.WS.web_socket")
local ws_util = require("service_utils.WS.ws_util")
local ws_const = require("service_utils.WS.ws_const")

local log = require("ws_spec.log")

local echo = {}

local function reply(msg, text)
	return ws_util.send_msg({ _ss = msg._ss }, text, { msg_type = "TEXT" })
end

local function client(msg, port, with_handler)
	local conn, status = ws.connect({ url = "ws://127.0.0.1:" .. port .. "/", hdrs = {}, external = false, timeout = 5,
		msg_handler = with_handler and "ws_spec.client_cb" or nil })
	if conn == nil then
		return reply(msg, "CLIENT-FAIL " .. tostring(status))
	end
	assert(ws_util.send_msg(conn, "hello from the handler", { msg_type = "TEXT" }))
	if with_handler then
		return reply(msg, "CLIENT-SENT")
	end
	local answer, why = ws_util.recv_frame(conn)
	ws_util.close(conn)
	return reply(msg, answer and ("CLIENT-OK " .. answer.data) or ("CLIENT-FAIL " .. tostring(why)))
end

function echo.init(request, response, uc)
	log("init", request:get_uri())
	return true
end

function echo.handle_open(conn)
	log("open", tostring(conn.path))
end

function echo.handle_message(msg)
	local data = msg.data
	assert(#data == msg.payload_len)
	local cmd, arg, rest = data:match("^(%u+) (%S+) ?(.*)$")
	if cmd == "CONNECT" or cmd == "CONNECTCB" then
		return client(msg, arg, cmd == "CONNECTCB")
	elseif cmd == "POOLADD" then
		ws_util.add_ws_to_pool({ _ss = msg._ss }, arg)
		return reply(msg, "POOLED")
	elseif cmd == "POOLSEND" then
		local pooled = ws_util.get_ws_from_pool(arg)
		if pooled == nil then
			return reply(msg, "NOPOOL")
		end
		return reply(msg, ws_util.send_msg(pooled, rest, { msg_type = "TEXT" }) and "SENT" or "SEND-FAIL")
	elseif cmd == "CLOSE" then
		return msg.conn:close(tonumber(arg), "bye")
	elseif data == "LINKS" then
		return reply(msg, tostring(ws.open_connections()))
	elseif cmd == "COMPRESSED" then
		return reply(msg, ("COMPRESSED %s %d"):format(tostring(msg.compressed), #data))
	end
	local kind = msg.op_code == ws_const.FRAME_OP_BINARY and "BINARY" or "TEXT"
	return ws_util.send_msg({ _ss = msg._ss }, data, { msg_type = kind })
end

function echo.handle_ping(msg)
	log("ping", msg.data)
end

function echo.handle_close(msg)
	log("close", tostring(msg.code), msg.reason)
end

return echo
