-- service_utils.WS.ws_util: the original's function forms over connection objects, the
-- same in both runtimes.
--
-- `conn` may be a connection object or any table holding the socket in `_ss` or `ss`
-- (`{_ss = msg._ss}`, as the original's callers write); the runtime (standalone, or the
-- evluaserver glue) says how such a table names a connection and keeps the pools.
-- Errors the peer or the connection's state cause are values: nil, message, kind.
local ws_const = require("service_utils.WS.ws_const")
local runtime = require("service_utils.WS.web_socket")._runtime

local ws_util = {}

-- send_msg(conn, msg [, {msg_type = "TEXT"|"BINARY"}]) -> true | nil, err
-- A binary frame unless msg_type = "TEXT", as in the original (flags 0 = FRAME_BINARY).
function ws_util.send_msg(conn, msg, opts)
	assert(type(msg) == "string", "ws_util.send_msg: msg must be a string")
	return runtime.connection_of(conn, "send_msg"):send(msg, { msg_type = opts and opts.msg_type or "BINARY" })
end

-- recv_frame(conn [, timeout]) -> msg | nil, "timeout" | nil, "closed", code, reason
-- Raises the original error on a connection that has a msg_handler.
function ws_util.recv_frame(conn, timeout)
	if type(conn) == "table" and conn.msg_handler ~= nil then
		error("Cannot invoke ws_util.recv_frame when message_handler is set for the websocket", 2)
	end
	return runtime.connection_of(conn, "recv_frame"):recv(timeout)
end

-- ping(conn [, payload]) -> true | nil, err
function ws_util.ping(conn, payload)
	return runtime.connection_of(conn, "ping"):ping(payload)
end

-- close(conn [, code [, reason]]) -> true | nil, err
function ws_util.close(conn, code, reason)
	return runtime.connection_of(conn, "close"):close(code or ws_const.WS_NORMAL_CLOSE, reason)
end

-- bytes of a send_frame buffer: a string, or ffi cdata with its size
local function frame_bytes(buf, size)
	if type(buf) == "string" then
		return size and buf:sub(1, size) or buf
	end
	return require("ffi").string(buf, size)
end

-- send_frame{ss= | conn=, flags=, buf=, size= [, use_mask=]} -> the table | nil, err, kind
-- The original's low-level send, mapped onto the connection: flags 0 or BINARY a binary
-- message, TEXT a text message, PING a ping, CLOSE a close (code from the first two bytes
-- of buf, default 1000). Frames always carry FIN; masking follows the connection's role
-- (use_mask is accepted and ignored: a server must not mask, a client must).
function ws_util.send_frame(inp)
	assert(type(inp) == "table", "ws_util.send_frame: needs a table")
	local conn = runtime.connection_of(inp.conn or { _ss = inp.ss }, "send_frame")
	-- the opcode is the low four bits of flags (written without & so that Lua 5.1 parses it)
	local op = (inp.flags == nil or inp.flags == 0) and ws_const.FRAME_OP_BINARY or inp.flags % 16
	local payload = frame_bytes(inp.buf or "", inp.size)
	local ok, err, kind
	if op == ws_const.FRAME_OP_TEXT or op == ws_const.FRAME_OP_BINARY then
		ok, err, kind = conn:send(payload, { msg_type = op == ws_const.FRAME_OP_TEXT and "TEXT" or "BINARY" })
	elseif op == ws_const.FRAME_OP_PING then
		ok, err, kind = conn:ping(payload)
	elseif op == ws_const.FRAME_OP_CLOSE then
		local code = #payload >= 2 and (payload:byte(1) * 256 + payload:byte(2)) or ws_const.WS_NORMAL_CLOSE
		ok, err, kind = conn:close(code, payload:sub(3))
	else
		error(("ws_util.send_frame: opcode %d cannot be sent (continuations and pongs are the library's)"):format(op), 2)
	end
	if not ok then
		return nil, err, kind
	end
	return inp
end

-- add_ws_to_pool(conn, name) -> true. Pools are process-wide under evluaserver.
function ws_util.add_ws_to_pool(conn, name)
	assert(type(name) == "string", "ws_util.add_ws_to_pool: name must be a string")
	runtime.pool_add(name, runtime.connection_of(conn, "add_ws_to_pool"))
	return true
end

-- A pool may hand back a connection that has closed until it drops it: this many tries.
local POOL_TRIES = 100

-- get_ws_from_pool(name) -> an open connection of the pool | nil. As in the original it
-- stays pooled (the pool hands its connections out in turn); closed ones are dropped.
function ws_util.get_ws_from_pool(name)
	assert(type(name) == "string", "ws_util.get_ws_from_pool: name must be a string")
	for _ = 1, POOL_TRIES do
		local conn = runtime.pool_next(name)
		if conn == nil then
			return nil
		end
		if conn:is_open() then
			return conn
		end
		runtime.pool_forget(name, conn)
	end
	return nil
end

return ws_util
