-- service_utils.WS platform runtime: the module inside evluaserver (the `platform` global).
--
-- Design criteria:
--  * evluaserver owns the sockets, and its platform.* I/O functions yield the Lua state
--    (lua_yieldk); a yield cannot cross a C (Rust) frame. So this file is only what must
--    be Lua: the platform.* calls and the handler calls. Everything a connection *is*
--    (decoder, fragments, close handshake, pong, queued output, how it ended) is the
--    connection engine in the .so (`core.links`), the same engine the standalone runtime
--    drives.
--  * No Lua value survives from one frame to the next: each frame is handled on any
--    worker thread in a fresh Lua state (or another cached one), and
--    platform.get_accepted_stream_socket() makes a new userdata every call. Connections
--    are therefore found by platform.get_sock_fd(ss) in the .so's process-wide registry,
--    opened at ws.accept / ws.connect and removed at their end; pools are evluaserver's
--    process-wide service_utils.common.pool_repos.
--  * platform.* is called as evluaserver defines it: optional arguments are omitted, never
--    nil; a failed read, a protocol error or the end of the closing handshake marks the
--    socket to be closed (otherwise evluaserver dispatches the unread bytes again, forever).
--  * One dispatch reads what the socket has (one recv), delivers every complete event and
--    returns: it never waits for the rest of a frame, which waits in the registry.
--  * Buffers are ffi `unsigned char[n]` when `ffi` can be required (msg.buf as existing
--    handlers expect it); otherwise byte buffers of `core` passed as {buffer=, offset=}.
local core, ws = ...

local links = core.links
local ws_const = require("service_utils.WS.ws_const")
local has_ffi, ffi = pcall(require, "ffi")
if not has_ffi then
	ffi = nil
end

local evl = {}

local RECV_WITH_HANDLER = core.RECV_WITH_HANDLER

local function log(what)
	io.stderr:write("service_utils.WS: ", what, "\n")
end

---------------------------------------------------------------------------------------
-- Bytes in and out through platform.*

-- Reads what the socket has, up to n bytes (waiting up to `timeout` whole seconds for
-- the first, when given); raises as platform.recv_data_from_socket does.
local function receive(ss, n, timeout)
	local buf, ptr
	if ffi then
		buf = ffi.new("unsigned char[?]", n)
		ptr = ffi.getptr(buf)
	else
		buf = core.buffer(n)
		ptr = { buffer = buf, offset = 0 }
	end
	local got
	if timeout then
		got = platform.recv_data_from_socket(ss, ptr, n, timeout)
	else
		got = platform.recv_data_from_socket(ss, ptr, n)
	end
	if math.type(got) ~= "integer" or got <= 0 then
		error("recv_data_from_socket returned " .. tostring(got))
	end
	return ffi and ffi.string(buf, got) or buf:read_at(0, got)
end

-- Sends all of `bytes`: accepted sockets through send_data_on_acc_socket, client sockets
-- through send_data_on_socket (both yield until done and raise on failure).
local function send_bytes(conn, bytes)
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
	if conn._role == "client" then
		sent = platform.send_data_on_socket(conn._ss, ptr, n)
	else
		sent = platform.send_data_on_acc_socket(conn._ss, ptr, n)
	end
	if sent ~= n then
		error(("sent %s of %d bytes"):format(tostring(sent), n))
	end
end

-- Sends what the connection's engine has queued. One sender at a time: if another Lua
-- state is sending this connection's output, it will find ours too. A connection whose
-- socket is gone (no `_ss`) has nothing to send, and its descriptor may be another's.
local function flush(conn)
	if conn._ss == nil then
		return
	end
	while true do
		local bytes = links.take_output(conn._fd)
		if bytes == nil then
			return
		end
		local ok, err = pcall(send_bytes, conn, bytes)
		links.sent(conn._fd, ok)
		if not ok then
			log(("connection #%s: sending failed: %s"):format(tostring(conn.id), tostring(err)))
			return
		end
	end
end

---------------------------------------------------------------------------------------
-- Connection objects (msg.conn, what ws.connect returns): a view of a registry entry,
-- valid in any Lua state.

local conn_methods = {}
local conn_mt = { __index = conn_methods, __name = "ws_connection" }

local function connection(ss, fd, info)
	info = info or {}
	return setmetatable({
		_ss = ss, ss = ss, _fd = fd, _role = info.role,
		id = info.id, host = info.host, port = info.port, path = info.path, query = info.query,
		handler = info.handler, msg_handler = info.handler,
		is_TLS = info.is_TLS, subprotocol = info.subprotocol, _close_timeout = info.close_timeout,
	}, conn_mt)
end

-- The connection a ws_util caller means: the object itself, or a table holding the
-- socket in `_ss` / `ss` (`{_ss = msg._ss}`, as the original's callers write).
local function connection_of(x, fname)
	if getmetatable(x) == conn_mt then
		return x
	end
	local ss = type(x) == "table" and (x._ss or x.ss) or nil
	if ss == nil then
		error("ws_util." .. fname .. ": conn must be a connection or a table with _ss", 3)
	end
	local fd = platform.get_sock_fd(ss)
	return connection(ss, fd, links.info(fd))
end
evl.connection_of = connection_of

local OP_OF = { TEXT = ws_const.FRAME_OP_TEXT, BINARY = ws_const.FRAME_OP_BINARY }
-- The opcode of each event kind links.next reports.
local OPCODE = { text = ws_const.FRAME_OP_TEXT, binary = ws_const.FRAME_OP_BINARY, ping = ws_const.FRAME_OP_PING,
	pong = ws_const.FRAME_OP_PONG }

-- What a send or ping answers: true once what links queued is sent; or what links refused
-- (nil, message, kind: the same answers as the standalone runtime's, made in the .so).
local function flushed(conn, ok, err, kind)
	if not ok then
		return nil, err, kind
	end
	flush(conn)
	return true
end

-- send(data [, {msg_type = "TEXT"|"BINARY", compress = false}]) -> true | nil, err, kind
-- (default TEXT; compressed when permessage-deflate was agreed, unless compress = false)
function conn_methods:send(data, opts)
	local msg_type = opts and opts.msg_type or "TEXT"
	local op = OP_OF[msg_type]
	if op == nil then
		error(core.MSG_TYPE_REFUSED:format("send", tostring(msg_type)), 2)
	end
	return flushed(self, links.send(self._fd, self.id, op, data, not opts or opts.compress ~= false))
end

-- Every send is flushed before it returns, so the queue is never full here.
conn_methods.try_send = conn_methods.send

function conn_methods:ping(payload)
	return flushed(self, links.ping(self._fd, self.id, payload or ""))
end

function conn_methods:is_open()
	return self.id ~= nil and links.is_open(self._fd, self.id) and platform.websocket_active(self._ss) ~= false
end

-- A client connection's end: the socket is shut down and the connection forgotten.
local function end_client(conn)
	pcall(platform.shutdown_websocket, conn._ss, 1)
	links.remove(conn._fd, conn.id)
end

-- The next event of a connection read here (a client without a msg_handler): reads the
-- socket when the engine has nothing. Returns kind, data, code, compressed | nil, "timeout".
local function next_event(conn, timeout)
	while true do
		flush(conn)
		local kind, data, code, _, compressed = links.next(conn._fd)
		if kind ~= nil then
			return kind, data, code, compressed
		end
		local ok, got = pcall(receive, conn._ss, links.read_size(conn._fd), timeout)
		if ok then
			links.feed(conn._fd, got)
		elseif timeout and tostring(got):lower():find("time", 1, true) then
			return nil, "timeout"
		else
			links.transport_closed(conn._fd)
		end
	end
end

-- recv([timeout]) -> msg | nil, "timeout" | nil, "closed", code, reason. Pings are
-- answered on the way. `timeout` is in seconds (evluaserver waits whole seconds).
function conn_methods:recv(timeout)
	if self.handler ~= nil then
		error(RECV_WITH_HANDLER, 2)
	end
	if self.id == nil then
		return nil, "closed", 1006, "connection is closed"
	end
	local wait = timeout and math.max(1, math.ceil(timeout)) or nil
	while true do
		local kind, data, code, compressed = next_event(self, wait)
		if kind == nil then
			return nil, data
		elseif kind == "text" or kind == "binary" then
			return evl.message(self, OPCODE[kind], data, compressed)
		elseif kind == "closed" then
			end_client(self)
			return nil, "closed", code, data
		end
	end
end

-- close([code [, reason]]) -> true | nil, err. On a connection served by handle_msg the
-- peer's answer arrives with the next dispatch; a client read here waits for it (up to
-- its close_timeout, 5 s by default, in whole seconds) and then shuts the socket down.
function conn_methods:close(code, reason)
	local ok, err, kind = links.close(self._fd, self.id, code or ws_const.WS_NORMAL_CLOSE, reason or "")
	if not ok then
		return nil, err, kind
	end
	flush(self)
	if self._role == "client" and self.handler == nil then
		local event
		-- evluaserver waits whole seconds
		local wait = math.tointeger(math.max(1, math.ceil(self._close_timeout)))
		repeat
			event = next_event(self, wait)
		until event == "closed" or event == nil
		end_client(self)
	end
	return true
end

function conn_mt.__tostring(c)
	return ("ws_connection #%s %s %s"):format(tostring(c.id), c.path or "?", c._role == "client" and "(client)" or "(accepted)")
end

-- The msg table of the original (op_code, flags, payload_len, buf, _ss) plus data and conn.
function evl.message(conn, op, data, compressed)
	local msg = { op_code = op, flags = ws_const.FRAME_FLAG_FIN | op, payload_len = #data, data = data, _ss = conn._ss, conn = conn,
		compressed = compressed }
	if ffi then
		local buf = ffi.new("unsigned char[?]", #data)
		ffi.copy(buf, data, #data)
		msg.buf = buf
	else
		msg.buf = data
	end
	return msg
end

---------------------------------------------------------------------------------------
-- Handler calls

-- Loads a handler class in this Lua state; nil and the error when it cannot be loaded.
local function load_handler(name)
	local ok, handler = pcall(require, name)
	if ok and type(handler) == "table" then
		return handler
	end
	return nil, ok and ("module '" .. name .. "' is not a table") or tostring(handler)
end

-- Calls handler[fname](arg) when the class defines it (a Lua error is logged and closes
-- the connection with 1011), then sends the connection's output whatever the class
-- defines: the engine's own answers (pong, the close reply, a protocol error's close
-- frame) are queued before the hook is looked up, and a handler written for the original
-- module has no handle_close.
local function call(conn, handler, fname, arg)
	local f = handler[fname]
	if f ~= nil then
		local ok, err = pcall(f, arg)
		if not ok then
			log(("handler '%s' failed in %s on connection #%s: %s"):format(tostring(conn.handler), fname, tostring(conn.id), tostring(err)))
			links.handler_failed(conn._fd, conn.id)
		end
	end
	flush(conn)
end

local HOOK = { text = "handle_message", binary = "handle_message", ping = "handle_ping", pong = "handle_pong" }

-- Delivers every event the engine has for a connection served by handle_msg; returns
-- true once the connection has ended (handle_close called).
local function deliver(conn, handler)
	while true do
		flush(conn)
		local kind, data, code, error_code, compressed = links.next(conn._fd)
		if kind == nil then
			return false
		elseif kind == "closed" then
			if error_code then
				log(("connection #%s: protocol error: %s (%d)"):format(tostring(conn.id), data, error_code))
			end
			local msg = evl.message(conn, ws_const.FRAME_OP_CLOSE, data)
			msg.code, msg.reason = code, data
			call(conn, handler, "handle_close", msg)
			return true
		elseif kind == "timeout" then
			local msg = evl.message(conn, ws_const.FRAME_OP_CLOSE, data)
			msg.reason = data
			call(conn, handler, "handle_timeout", msg)
		else
			call(conn, handler, HOOK[kind], evl.message(conn, OPCODE[kind], data, compressed))
		end
	end
end

---------------------------------------------------------------------------------------
-- Server side

-- Calls handle_close for the connections whose sockets evluaserver closed without
-- dispatching them (the peer went away without a close frame: 1006), which the registry
-- finds at most once a second; runs in whatever dispatch comes next.
local function bury_gone()
	local gone = links.gone()
	if gone == nil then
		return
	end
	for _, info in ipairs(gone) do
		local handler = load_handler(info.handler) or {}
		local conn = connection(nil, info.fd, info)
		local msg = evl.message(conn, ws_const.FRAME_OP_CLOSE, info.reason)
		msg.code, msg.reason = info.code, info.reason
		call(conn, handler, "handle_close", msg)
	end
end

-- The namespace handler modules live under: the REST controller's appBasePath property.
function evl.handler_base()
	local ok, props = pcall(platform.properties_funcs)
	if ok and props and props.get_string_property then
		return props.get_string_property("service_utils.REST.controller.appBasePath") or ""
	end
	return ""
end

-- Called by ws.accept once the handshake is accepted, before the 101 is sent: evluaserver
-- is told to hand this socket's frames to ws.handle_msg, and the connection is opened.
function evl.upgrade(name, path, query, subprotocol, deflate)
	bury_gone()
	platform.set_ws_recvd_msg_handler(name)
	platform.set_socket_upgrade_to(1)
	local ss = platform.get_accepted_stream_socket()
	local fd = platform.get_sock_fd(ss)
	links.open(fd, "server", { handler = name, path = path, query = query, subprotocol = subprotocol or nil,
		deflate = deflate })
end

-- Called by ws.accept: the handler's handle_open(conn). evluaserver writes the 101 only
-- when the Upgrade request returns, and dies if frames are sent on the socket before
-- that: what handle_open sends waits in the engine (the registry hands out no output of
-- the connection until evluaserver first dispatches its socket), and goes out with the
-- connection's first dispatch.
function evl.opened(handler)
	local ss = platform.get_accepted_stream_socket()
	local fd = platform.get_sock_fd(ss)
	local conn = connection(ss, fd, links.info(fd))
	call(conn, handler, "handle_open", conn)
end

-- ws.handle_msg(request, response): evluaserver calls it each time an upgraded socket
-- (accepted, or a client socket tracked with a msg_handler) is readable.
function evl.handle_msg()
	bury_gone()
	local ss = platform.get_accepted_stream_socket()
	local fd = platform.get_sock_fd(ss)
	local info = links.info(fd)
	if info == nil then
		log(("socket %d is not an open WebSocket (its connection ended): closing it"):format(fd))
		platform.set_acc_sock_to_be_closed()
		return
	end
	links.upgraded(fd)
	local conn = connection(ss, fd, info)
	local ok, data = pcall(receive, ss, links.read_size(fd))
	if ok then
		links.feed(fd, data)
	else
		log(("connection #%d: reading failed, closing: %s"):format(info.id, tostring(data)))
		links.transport_closed(fd)
	end
	local handler, err = load_handler(info.handler or platform.get_ws_recvd_msg_handler())
	if handler == nil then
		log(("handler '%s' cannot be loaded on connection #%d: %s"):format(tostring(info.handler), info.id, err))
		links.handler_failed(fd, info.id)
		handler = {}
	end
	if deliver(conn, handler) then
		platform.set_acc_sock_to_be_closed()
		links.remove(fd, info.id)
	end
end

---------------------------------------------------------------------------------------
-- Client side

-- Opens the HTTP connection and exchanges the Upgrade request and answer; returns
-- ss, status, headers, extra fields | nil, message, kind.
local function http_upgrade(url, hdrs, external, timeout)
	local ok, client_factory = pcall(require, "service_utils.REST.client")
	if ok and type(client_factory) == "table" and client_factory.new then
		local conn = client_factory.new(url.host, url.port, url.secure, external, timeout)
		conn._recv_timeout = timeout
		conn:send_request(url.target, hdrs)
		local _, _, status, resp_hdrs = conn:recv_response()
		return conn._ss, status, resp_hdrs, conn
	end
	if url.secure then
		return nil, "connect: wss:// under evluaserver needs service_utils.REST.client (libevlnetssl)", "tls"
	end
	local http_conn, msg, ss = platform.make_http_connection(url.host, url.port, timeout)
	if http_conn == nil then
		return nil, ("connect: cannot connect to %s:%d: %s"):format(url.host, url.port, tostring(msg)), "io"
	end
	local request = platform.new_request()
	for n, v in pairs(hdrs) do
		if n ~= "method" then
			request:set_hdr_field(n, v)
		end
	end
	request:set_uri(url.target)
	request:set_host(url.port == (url.secure and 443 or 80) and url.host or (url.host .. ":" .. url.port))
	platform.send_request_header(http_conn, request)
	local response = platform.receive_http_response(http_conn, timeout)
	return ss, response:get_status(), response:get_hdr_fields(), { _http_conn = http_conn }
end

-- ws.connect(inputs) -> connection, status, headers | nil, message, kind. The inputs are
-- read by core.connect_inputs, as the standalone runtime reads them: what evluaserver
-- cannot honour is refused there with a message naming it, never ignored.
function evl.connect(inputs)
	if type(inputs) ~= "table" then
		error("connect: inputs must be a table", 2)
	end
	local ok_inputs, given = pcall(core.connect_inputs, inputs)
	if not ok_inputs then
		error(given, 2)
	end
	local url = { secure = given.secure, host = given.host, port = given.port, target = given.target }
	local timeout = given.timeout
	local key = core.client_key()
	local hdrs = { method = "GET", Connection = "Upgrade", Upgrade = "websocket",
		["Sec-WebSocket-Key"] = key, ["Sec-WebSocket-Version"] = ws.WEBSOCKET_VERSION,
		["Sec-WebSocket-Extensions"] = given.extensions }
	for n, v in pairs(given.hdrs) do
		hdrs[n] = v
	end
	local ok, ss, status, resp_hdrs, extra = pcall(http_upgrade, url, hdrs, inputs.external, timeout)
	if not ok then
		local why = tostring(ss)
		return nil, "connect: " .. why, why:lower():find("time", 1, true) and "timeout" or "io"
	end
	if ss == nil then
		local message, kind = status, resp_hdrs -- http_upgrade's nil, message, kind
		return nil, message, kind
	end
	local good, err = core.check_response(status, resp_hdrs or {}, key)
	if not good then
		return nil, err, "handshake"
	end
	local deflate
	deflate, err = core.deflate_accept(resp_hdrs["Sec-WebSocket-Extensions"] or resp_hdrs["sec-websocket-extensions"],
		inputs.compression)
	if deflate == nil then
		return nil, err, "handshake"
	end
	local handler
	if given.msg_handler ~= nil then
		handler, err = load_handler(given.msg_handler)
		if handler == nil then
			return nil, ("connect: msg_handler module '%s' failed to load: %s"):format(given.msg_handler, err), "handler"
		end
	end
	local fd = platform.get_sock_fd(ss)
	local protocol = resp_hdrs["Sec-WebSocket-Protocol"] or resp_hdrs["sec-websocket-protocol"]
	links.open(fd, "client", { handler = given.msg_handler, path = url.target, host = url.host, port = url.port,
		is_TLS = url.secure, subprotocol = protocol, deflate = deflate or nil, max_message_size = given.max_message_size,
		close_timeout = given.close_timeout })
	local conn = connection(ss, fd, links.info(fd))
	for k, v in pairs(extra or {}) do
		if conn[k] == nil then
			conn[k] = v
		end
	end
	if handler ~= nil then
		platform.track_ss_as_websocket(ss, given.msg_handler)
		call(conn, handler, "handle_open", conn)
	end
	return conn, status, resp_hdrs
end

---------------------------------------------------------------------------------------
-- Pools: evluaserver's process-wide socket pools (libevpoolrepos), loaded on first use.

local pool
local function the_pool(fname)
	if pool == nil then
		local ok, repos = pcall(require, "service_utils.common.pool_repos")
		if not ok then
			error("ws_util." .. fname .. ": pools under evluaserver need service_utils.common.pool_repos (libevpoolrepos): " .. tostring(repos), 3)
		end
		pool = repos.new("WEBSOCKETS", true)
	end
	return pool
end

function evl.pool_add(name, conn)
	the_pool("add_ws_to_pool"):add_to_pool(name, conn._ss)
end

-- The next connection of pool `name` in turn, left in the pool (share_from_pool: this
-- evpoco's get_from_pool never returns a live socket); nil when the pool is empty.
function evl.pool_next(name)
	local ss = the_pool("get_ws_from_pool"):share_from_pool(name)
	if ss == nil then
		return nil
	end
	local fd = platform.get_sock_fd(ss)
	return connection(ss, fd, links.info(fd))
end

-- evluaserver drops a pooled socket once it has closed it.
function evl.pool_forget() end

---------------------------------------------------------------------------------------
-- Topics: subscriptions live in the .so's registry (process-wide, by descriptor and id);
-- a subscribed connection's socket is also kept in a pool of its own, so that a publish
-- handled in any Lua state can find each recipient's socket and send its output.

local function own_pool(fd, id)
	return ("ws.topics.%d.%d"):format(fd, id)
end

-- subscribe(topic) -> true | nil, err, kind
function conn_methods:subscribe(topic)
	local ok, first, err, kind = links.subscribe(self._fd, self.id, topic)
	if not ok then
		return nil, err, kind
	end
	if first then
		the_pool("subscribe"):add_to_pool(own_pool(self._fd, self.id), self._ss)
	end
	return true
end

-- unsubscribe(topic) -> whether it was subscribed
function conn_methods:unsubscribe(topic)
	return self.id ~= nil and links.unsubscribe(self._fd, self.id, topic)
end

-- topics() -> the connection's topics
function conn_methods:topics()
	return self.id ~= nil and links.topics(self._fd, self.id) or {}
end

-- The socket this dispatch serves and its descriptor, if any (none in a script).
local function own_socket()
	local ok, ss = pcall(platform.get_accepted_stream_socket)
	if ok and ss ~= nil then
		return ss, platform.get_sock_fd(ss)
	end
end

-- Sends the output of the subscribers fd, id, fd, id, ... of `reached`. The socket this
-- dispatch serves (`own_ss`, `own`) is used as it is, never taken from its pool. A
-- subscriber still inside its upgrade (its 101 not out) keeps its copy until its first
-- dispatch or the next delivery to it: evluaserver gives no way to wait for that 101
-- safely (a platform.ev_hibernate inside an upgrade made it abort in our tests).
local function flush_subscribers(reached, own_ss, own)
	local repos = #reached > 0 and the_pool("publish") or nil
	for i = 1, #reached, 2 do
		local fd, id = reached[i], reached[i + 1]
		local ss = fd == own and own_ss or repos:share_from_pool(own_pool(fd, id))
		if ss ~= nil then
			flush(connection(ss, fd, links.info(fd)))
		end
	end
end

-- ws.publish(topic, data [, {msg_type =, exclude = conn}]) -> recipients: queued on every
-- subscriber in the process (encoded once), then each one's output is sent.
-- Refused: a publish from inside an upgrade (init, handle_open). It writes to other
-- connections' sockets from evluaserver's HTTP request for the upgrade, and the real
-- evluaserver aborted soon after that in our tests ("IS THIS AN IMPOSSIBLE CONDITION", or
-- a segfault after "DEAD REQUEST"), whether or not the publish reached the new connection.
local PUBLISH_IN_UPGRADE = "ws.publish: under evluaserver, publish from handle_message, not from inside an upgrade "
	.. "(init, handle_open): evluaserver aborts when other sockets are written to from the upgrade's request"

function evl.publish(topic, data, opts)
	local exclude = opts and opts.exclude
	local own_ss, own = own_socket()
	if own ~= nil and links.upgrading(own) then
		error(PUBLISH_IN_UPGRADE, 2)
	end
	local reached = links.publish(topic, data, opts and opts.msg_type, exclude and exclude._fd, exclude and exclude.id)
	flush_subscribers(reached, own_ss, own)
	return math.floor(#reached / 2)
end

return evl
