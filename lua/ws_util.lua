-- service_utils.WS.ws_util: the original's function forms over a connection object.
--
-- `conn` may be the ws_connection object itself or any table holding it in `_ss` or `ss`
-- (`{_ss = msg._ss}`, as the original's callers write). Errors are values: nil, message.
local ws_const = require("service_utils.WS.ws_const")

-- Under evluaserver (the `platform` global) the functions do their I/O through platform.*.
if rawget(_G, "platform") ~= nil then
	return require("service_utils.WS.web_socket")._platform_util
end

local ws_util = {}

local function connection_of(conn, fname)
	if type(conn) == "table" then
		conn = conn._ss or conn.ss
	end
	if conn == nil then
		error("ws_util." .. fname .. ": conn must be a connection or a table with _ss", 3)
	end
	return conn
end

-- send_msg(conn, msg [, {msg_type = "TEXT"|"BINARY"}]) -> true | nil, err
-- A binary frame unless msg_type = "TEXT", as in the original (flags 0 = FRAME_BINARY).
function ws_util.send_msg(conn, msg, opts)
	assert(type(msg) == "string", "ws_util.send_msg: msg must be a string")
	return connection_of(conn, "send_msg"):send(msg, { msg_type = opts and opts.msg_type or "BINARY" })
end

-- recv_frame(conn [, timeout]) -> msg | nil, "timeout" | nil, "closed", code, reason
-- Raises the original error on a connection that has a msg_handler.
function ws_util.recv_frame(conn, timeout)
	return connection_of(conn, "recv_frame"):recv(timeout)
end

-- ping(conn [, payload]) -> true | nil, err
function ws_util.ping(conn, payload)
	return connection_of(conn, "ping"):ping(payload)
end

-- close(conn [, code [, reason]]) -> true | nil, err
function ws_util.close(conn, code, reason)
	return connection_of(conn, "close"):close(code or ws_const.WS_NORMAL_CLOSE, reason)
end

-- Named pools of open connections: add_ws_to_pool(conn, name), get_ws_from_pool(name).
local pools = {}

function ws_util.add_ws_to_pool(conn, name)
	assert(type(name) == "string", "ws_util.add_ws_to_pool: name must be a string")
	local pool = pools[name]
	if pool == nil then
		pool = {}
		pools[name] = pool
	end
	pool[#pool + 1] = conn
	return true
end

-- Returns an open connection from the pool (dead ones are dropped), or nil.
function ws_util.get_ws_from_pool(name)
	local pool = pools[name]
	while pool ~= nil and #pool > 0 do
		local conn = table.remove(pool)
		if connection_of(conn, "get_ws_from_pool"):is_open() then
			return conn
		end
	end
	return nil
end

return ws_util
