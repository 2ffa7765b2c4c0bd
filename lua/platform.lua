-- service_utils.WS platform runtime: the module inside evluaserver (the `platform` global).
--
-- Design criteria:
--  * evluaserver owns the sockets and its platform.* I/O functions yield the Lua state
--    (lua_yieldk). A yield cannot cross a C (Rust) frame, so everything that calls
--    platform.* or a handler is Lua, here; Rust (`core`) is called only for byte work
--    that never calls back: header checks, unmasking, UTF-8, fragments, frame building.
--  * The original API and its return shapes stay; its protocol bugs do not: control
--    frames carry FIN, server frames are never masked, a close is answered with a status
--    code, fragments are reassembled (per socket, across ws.handle_msg calls), empty
--    payloads are fine, messages are size-limited (1009) and text is UTF-8 checked (1007),
--    binary data keeps its NUL bytes, the client keeps the URL query, speaks wss:// and
--    default ports, and returns (never raises) a handshake failure; pools never spin.
--  * Buffers are ffi `unsigned char[n]` when `ffi` can be required (msg.buf as existing
--    handlers expect it); otherwise byte buffers of `core` passed as {buffer=, offset=}.
local core, ws = ...

local ws_const = require("service_utils.WS.ws_const")
local has_ffi, ffi = pcall(require, "ffi")
if not has_ffi then
	ffi = nil
end

local evl = {}

-- Largest message accepted (1009 beyond), as in the standalone server.
evl.max_message_size = 16 * 1024 * 1024

-- Sockets opened by ws.connect (client role: masked frames out, unmasked frames in).
local client_sockets = setmetatable({}, { __mode = "k" })
-- One frame decoder per socket: fragments and UTF-8 state live across handle_msg calls.
local decoders = setmetatable({}, { __mode = "k" })

local function decoder_of(ss)
	local d = decoders[ss]
	if d == nil then
		d = core.frame_decoder(client_sockets[ss] and "client" or "server", evl.max_message_size)
		decoders[ss] = d
	end
	return d
end

---------------------------------------------------------------------------------------
-- Bytes in and out through platform.*

-- Receives exactly n bytes; raises (as platform.recv_data_from_socket does) on failure.
local function recv_bytes(ss, n, timeout)
	if ffi then
		local buf = ffi.new("unsigned char[?]", n)
		local got = 0
		while got < n do
			local r = platform.recv_data_from_socket(ss, ffi.getptr(buf + got), n - got, timeout)
			if r == nil or r <= 0 then
				error("Receiving data from websocket failed")
			end
			got = got + r
		end
		return ffi.string(buf, n)
	end
	local buf = core.buffer(n)
	local got = 0
	while got < n do
		local r = platform.recv_data_from_socket(ss, { buffer = buf, offset = got }, n - got, timeout)
		if r == nil or r <= 0 then
			error("Receiving data from websocket failed")
		end
		got = got + r
	end
	return buf:read_at(0, n)
end

-- Sends all of `bytes`: accepted sockets through send_data_on_acc_socket, client sockets
-- through send_data_on_socket.
local function send_bytes(ss, bytes, timeout)
	local n = #bytes
	local ptr
	if ffi then
		ptr = ffi.getptr(ffi.cast("const unsigned char *", bytes))
	else
		local buf = core.buffer(n)
		buf:write_at(0, bytes)
		ptr = { buffer = buf, offset = 0 }
	end
	local sent
	if client_sockets[ss] then
		sent = platform.send_data_on_socket(ss, ptr, n, timeout or -1)
	else
		sent = platform.send_data_on_acc_socket(ss, ptr, n)
	end
	if sent == nil or sent < n then
		error("Sending data on websocket failed")
	end
	return sent
end

-- Sends one final frame (masked only from a client socket: RFC 6455 §5.1).
local function send_frame_bytes(ss, op, payload, timeout)
	return send_bytes(ss, core.encode_frame(op, payload, client_sockets[ss] == true), timeout)
end

-- Reads one frame; returns kind ("text", "binary", "ping", "pong", "close", "partial"),
-- data, close code, close reason; or nil, close code, reason for a protocol violation.
local function read_frame(ss, timeout)
	local d = decoder_of(ss)
	local header = recv_bytes(ss, 2, timeout)
	local need = d:header_len(header)
	if need > 2 then
		header = header .. recv_bytes(ss, need - 2, timeout)
	end
	local len, code, reason = d:check(header) -- judged before a byte of payload is read
	if len == nil then
		return nil, code, reason
	end
	local payload = len > 0 and recv_bytes(ss, len, timeout) or ""
	return d:frame(header, payload)
end

local OPCODE = { text = ws_const.FRAME_OP_TEXT, binary = ws_const.FRAME_OP_BINARY, ping = ws_const.FRAME_OP_PING,
	pong = ws_const.FRAME_OP_PONG, close = ws_const.FRAME_OP_CLOSE }

---------------------------------------------------------------------------------------
-- Connection objects handed to handlers (msg.conn) and returned by ws.connect

local conn_methods = {}
local conn_mt = { __index = conn_methods, __name = "ws_connection" }

function conn_methods:send(data, opts)
	return evl.util.send_msg(self, data, opts or { msg_type = "TEXT" })
end

function conn_methods:ping(payload)
	return evl.util.ping(self, payload)
end

function conn_methods:close(code, reason)
	return evl.util.close(self, code, reason)
end

function conn_methods:is_open()
	return platform.websocket_active == nil or platform.websocket_active(self._ss) ~= false
end

function conn_methods:recv(timeout)
	return evl.util.recv_frame(self, timeout)
end

function conn_mt.__tostring(c)
	return ("ws_connection %s %s"):format(c.host or "?", client_sockets[c._ss] and "(client)" or "(accepted)")
end

local function connection(ss, fields)
	local c = setmetatable(fields or {}, conn_mt)
	c._ss, c.ss = ss, ss
	return c
end

-- The msg table of the original (op_code, flags, payload_len, buf, _ss) plus data and conn.
local function message(ss, op, data)
	local msg = { op_code = op, flags = ws_const.FRAME_FLAG_FIN | op, payload_len = #data, data = data, _ss = ss }
	if ffi then
		local buf = ffi.new("unsigned char[?]", #data)
		ffi.copy(buf, data, #data)
		msg.buf = buf
	else
		msg.buf = data
	end
	msg.conn = connection(ss)
	return msg
end

---------------------------------------------------------------------------------------
-- Server side

-- The namespace handler modules live under: the REST controller's appBasePath property.
function evl.handler_base()
	local ok, props = pcall(platform.properties_funcs)
	if ok and props and props.get_string_property then
		return props.get_string_property("service_utils.REST.controller.appBasePath") or ""
	end
	return ""
end

-- Called by ws.accept once the handshake is accepted, before the 101 is sent.
function evl.upgrade(handler_name)
	platform.set_ws_recvd_msg_handler(handler_name)
	platform.set_socket_upgrade_to(1)
end

local function log(what)
	io.stderr:write("service_utils.WS: ", what, "\n")
end

-- Sends a close frame and has evluaserver close the socket after this frame.
local function close_accepted(ss, code, reason)
	pcall(send_frame_bytes, ss, ws_const.FRAME_OP_CLOSE, core.close_payload(code, reason))
	platform.set_acc_sock_to_be_closed()
end

-- Calls handler[fname](msg); a Lua error closes this connection with 1011 and is logged.
local function call_handler(handler, name, fname, msg, ss)
	local f = handler[fname]
	if f == nil then
		return true
	end
	local ok, err = pcall(f, msg)
	if not ok then
		log(("handler '%s' failed in %s: %s"):format(name, fname, tostring(err)))
		close_accepted(ss, 1011, "handler error")
	end
	return ok
end

-- ws.handle_msg(request, response): evluaserver calls it for each frame that arrives on
-- an upgraded socket (accepted, or a client socket tracked with a msg_handler).
function evl.handle_msg(request, response)
	local ss = platform.get_accepted_stream_socket()
	local kind, data, code, reason = read_frame(ss)
	if kind == nil then
		-- A protocol violation: read_frame returned nil, close code, reason (§7.4.1).
		local close_code, why = data, code
		log(("protocol error (%d): %s"):format(close_code, why))
		return close_accepted(ss, close_code, why)
	end
	if kind == "partial" then
		return
	end
	local name = platform.get_ws_recvd_msg_handler()
	local handler = require(name)
	if kind == "ping" then
		send_frame_bytes(ss, ws_const.FRAME_OP_PONG, data)
		return call_handler(handler, name, "handle_ping", message(ss, ws_const.FRAME_OP_PING, data), ss)
	elseif kind == "pong" then
		return call_handler(handler, name, "handle_pong", message(ss, ws_const.FRAME_OP_PONG, data), ss)
	elseif kind == "close" then
		-- Answer with the peer's code (an empty close with an empty one), then close.
		pcall(send_frame_bytes, ss, ws_const.FRAME_OP_CLOSE, code and core.close_payload(code) or "")
		local msg = message(ss, ws_const.FRAME_OP_CLOSE, data)
		msg.code, msg.reason = code or 1005, reason or ""
		call_handler(handler, name, "handle_close", msg, ss)
		platform.set_acc_sock_to_be_closed()
		return
	end
	return call_handler(handler, name, "handle_message", message(ss, OPCODE[kind], data), ss)
end

---------------------------------------------------------------------------------------
-- Client side

-- Opens the HTTP connection and exchanges the Upgrade request and answer; returns
-- ss, status, headers, extra fields | nil, message.
local function http_upgrade(url, hdrs, external, timeout, key)
	local ok, client_factory = pcall(require, "service_utils.REST.client")
	if ok and type(client_factory) == "table" and client_factory.new then
		local conn = client_factory.new(url.host, url.port, url.secure, external, timeout)
		conn._recv_timeout = timeout
		conn:send_request(url.target, hdrs)
		local _, _, status, resp_hdrs = conn:recv_response()
		return conn._ss, status, resp_hdrs, conn
	end
	if url.secure then
		return nil, "connect: wss:// under evluaserver needs service_utils.REST.client (libevlnetssl)"
	end
	local http_conn, msg, ss = platform.make_http_connection(url.host, url.port, timeout)
	if http_conn == nil then
		return nil, ("connect: cannot connect to %s:%d: %s"):format(url.host, url.port, tostring(msg))
	end
	local request = platform.new_request()
	for n, v in pairs(hdrs) do
		request:set_hdr_field(n, v)
	end
	request:set_uri(url.target)
	request:set_host(url.port == (url.secure and 443 or 80) and url.host or (url.host .. ":" .. url.port))
	platform.send_request_header(http_conn, request)
	local response = platform.receive_http_response(http_conn, timeout)
	return ss, response:get_status(), response:get_hdr_fields(), { _http_conn = http_conn }
end

-- ws.connect(inputs) -> connection, status, headers | nil, message
function evl.connect(inputs)
	assert(type(inputs) == "table", "connect: inputs must be a table")
	assert(type(inputs.url) == "string", "connect: inputs.url must be a string")
	assert(type(inputs.hdrs) == "table", "connect: inputs.hdrs must be a table")
	assert(type(inputs.external) == "boolean", "connect: inputs.external must be a boolean")
	assert(inputs.msg_handler == nil or type(inputs.msg_handler) == "string", "connect: inputs.msg_handler must be a string")
	assert(inputs.timeout == nil or type(inputs.timeout) == "number", "connect: inputs.timeout must be a number")
	local url = core.parse_url(inputs.url)
	url.secure = url.secure or inputs.secure == true
	local timeout = inputs.timeout or 40
	local key = core.client_key()
	local hdrs = { method = "GET", Connection = "Upgrade", Upgrade = "websocket",
		["Sec-WebSocket-Key"] = key, ["Sec-WebSocket-Version"] = ws.WEBSOCKET_VERSION }
	for n, v in pairs(inputs.hdrs) do
		if hdrs[n] == nil then
			hdrs[n] = v
		end
	end
	local ok, ss, status, resp_hdrs, extra = pcall(http_upgrade, url, hdrs, inputs.external, timeout, key)
	if not ok then
		return nil, "connect: " .. tostring(ss)
	end
	if ss == nil then
		return nil, status
	end
	if status ~= 101 then
		local xmsg = resp_hdrs and (resp_hdrs["X-msg"] or resp_hdrs["x-msg"])
		return nil, xmsg or ("connect: server answered " .. tostring(status))
	end
	local good, err = core.check_response(status, resp_hdrs, key)
	if not good then
		return nil, err
	end
	client_sockets[ss] = true
	local conn = connection(ss, extra or {})
	conn._host = conn._host or (url.host .. ":" .. url.port)
	conn._recv_timeout = conn._recv_timeout or timeout
	conn.host, conn.port, conn.is_TLS, conn.msg_handler = url.host, url.port, url.secure, inputs.msg_handler
	if inputs.msg_handler ~= nil then
		platform.track_ss_as_websocket(ss, inputs.msg_handler)
	end
	return conn, status, resp_hdrs
end

---------------------------------------------------------------------------------------
-- ws_util under evluaserver

local util = {}
evl.util = util

local function socket_of(conn, fname)
	assert(type(conn) == "table", "ws_util." .. fname .. ": conn must be a table")
	local ss = conn._ss or conn.ss
	assert(ss ~= nil, "ws_util." .. fname .. ": conn has no _ss")
	return ss
end

-- Turns a buffer argument (cdata with a size, or a string) into a string.
local function bytes_of(buf, size)
	if type(buf) == "string" then
		return size and buf:sub(1, size) or buf
	end
	return ffi.string(buf, size)
end

-- send_frame{ss=, size=, flags=, buf=, use_mask=, acc_sock=, conn=}: flags 0 means a
-- binary frame, as in the original. Frames always carry FIN; masking follows the socket's
-- role (use_mask is accepted and ignored: a server must not mask, a client must).
function util.send_frame(inp)
	assert(type(inp) == "table", "ws_util.send_frame: needs a table")
	local ss = inp.ss or (inp.conn and socket_of(inp.conn, "send_frame"))
	assert(ss ~= nil, "ws_util.send_frame: ss or conn is required")
	local op = (inp.flags == nil or inp.flags == 0) and ws_const.FRAME_OP_BINARY or (inp.flags & ws_const.FRAME_OP_BITMASK)
	local payload = bytes_of(inp.buf or "", inp.size)
	if op >= ws_const.FRAME_OP_CLOSE and #payload > 125 then
		error("Control frames must not have messages longer than 125 bytes")
	end
	send_frame_bytes(ss, op, payload)
	return inp
end

-- send_msg(conn, msg [, {msg_type = "TEXT"|"BINARY"}]) -> true: binary by default, as the
-- original; every byte is sent (the original stopped at the first NUL).
function util.send_msg(conn, msg, opts)
	local ss = socket_of(conn, "send_msg")
	assert(type(msg) == "string", "ws_util.send_msg: msg must be a string")
	local op = (opts and opts.msg_type == "TEXT") and ws_const.FRAME_OP_TEXT or ws_const.FRAME_OP_BINARY
	send_frame_bytes(ss, op, msg)
	return true
end

-- recv_frame(conn [, timeout]) -> msg | nil, "closed", code, reason: the next message on a
-- client connection without a msg_handler; pings are answered on the way.
function util.recv_frame(conn, timeout)
	if conn.msg_handler ~= nil then
		error("Cannot invoke ws_util.recv_frame when message_handler is set for the websocket")
	end
	local ss = socket_of(conn, "recv_frame")
	timeout = timeout or conn._recv_timeout
	while true do
		local kind, data, code, reason = read_frame(ss, timeout)
		if kind == nil then
			local close_code, why = data, code -- a protocol violation
			pcall(send_frame_bytes, ss, ws_const.FRAME_OP_CLOSE, core.close_payload(close_code, why))
			return nil, "closed", close_code, why
		elseif kind == "ping" then
			send_frame_bytes(ss, ws_const.FRAME_OP_PONG, data)
		elseif kind == "close" then
			pcall(send_frame_bytes, ss, ws_const.FRAME_OP_CLOSE, code and core.close_payload(code) or "")
			return nil, "closed", code or 1005, reason or ""
		elseif kind == "text" or kind == "binary" then
			return message(ss, OPCODE[kind], data)
		end
	end
end

-- close(conn [, code [, reason]]): a close frame with a status code (default 1000), then
-- platform.shutdown_websocket.
function util.close(conn, code, reason)
	local ss = socket_of(conn, "close")
	pcall(send_frame_bytes, ss, ws_const.FRAME_OP_CLOSE, core.close_payload(code or ws_const.WS_NORMAL_CLOSE, reason))
	if platform.shutdown_websocket then
		platform.shutdown_websocket(ss, 1)
	end
	return true
end

-- ping(conn [, payload])
function util.ping(conn, payload)
	payload = payload or ""
	if #payload > 125 then
		error("Control frames must not have messages longer than 125 bytes")
	end
	send_frame_bytes(socket_of(conn, "ping"), ws_const.FRAME_OP_PING, payload)
	return true
end

-- Named pools of sockets; get_ws_from_pool hands out an active one or nil, never spins.
local pools = {}

function util.add_ws_to_pool(conn, name)
	assert(type(name) == "string", "ws_util.add_ws_to_pool: name must be a string")
	local ss = socket_of(conn, "add_ws_to_pool")
	pools[name] = pools[name] or {}
	table.insert(pools[name], ss)
	return true
end

function util.get_ws_from_pool(name)
	local pool = pools[name]
	while pool ~= nil and #pool > 0 do
		local ss = table.remove(pool, 1)
		if platform.websocket_active == nil or platform.websocket_active(ss) then
			table.insert(pool, ss) -- stays pooled for the next caller, as in the original
			return connection(ss)
		end
	end
	return nil
end

return evl
