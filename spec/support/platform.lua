-- A stand-in for evluaserver's `platform` global, for the specs of the evluaserver runtime
-- where the real server (the kit) is not available. It is built to be as unforgiving as
-- evluaserver (evpoco 73eae70) on every point the module depends on:
--
--  * Real loopback sockets (luasocket) and a scheduler of coroutines; every function that
--    yields in evluaserver yields here too, so a yield across a C (Rust) frame fails.
--  * get_accepted_stream_socket() returns a new object on every call (evluaserver makes a
--    new userdata holding a new StreamSocket copy): never the same key twice.
--  * Every dispatch (the REST request that calls ws.accept, each ws.handle_msg) runs with
--    every module loaded afresh, as in a fresh Lua state: module-level Lua state of the
--    module or of a handler is gone by the next frame. What survives is what evluaserver
--    keeps in C: the .so (never unloaded) and the pool repository.
--  * Optional arguments are type-checked when present: an explicit nil is an error, with
--    luaL_check*'s message ("bad argument #4 to 'recv_data_from_socket' (number expected,
--    got nil)"); integers must have an integer representation.
--  * A dispatch that fails to read a readable socket and does not call
--    set_acc_sock_to_be_closed() is dispatched again, as evluaserver does; after 100 such
--    dispatches in a row the stand-in reports the read-error loop and exits (status 5).
--  * A Lua error in ws.handle_msg is only logged, the socket stays (as evluaserver does).
--  * The HTTP response is written when the request returns, not at response:send()
--    (evpoco buffers it; a 101's body is dropped), and a frame sent on the socket before
--    then kills the process (status 6), as it kills evluaserver.
--
-- Where evluaserver takes a pointer, this stand-in takes what the glue passes without
-- ffi: {buffer = <core byte buffer>, offset = n}.
local socket = require("socket")

local M = {}

---------------------------------------------------------------------------------------
-- The scheduler

local tasks = {} -- task -> true; task = {co =, conn =, wait = {sock =, mode =, deadline =}}
local current -- the task running now

local function spawn(fn, conn)
	local task = { co = coroutine.create(fn), conn = conn }
	tasks[task] = true
	return task
end
M.spawn = spawn

-- Yields until `sock` is readable ("r") or writable ("w"); false on timeout.
local function wait(sock, mode, timeout)
	local deadline = (timeout and timeout >= 0) and (socket.gettime() + timeout) or nil
	return coroutine.yield({ sock = sock, mode = mode, deadline = deadline })
end

-- Yields once (a platform call that yields but has nothing to wait for).
local function yield_now()
	return coroutine.yield({ deadline = socket.gettime() })
end

local function resume(task, ...)
	local previous = current
	current = task
	local ok, req = coroutine.resume(task.co, ...)
	current = previous
	if not ok then
		io.stderr:write("platform stand-in: task failed: ", tostring(req), "\n", debug.traceback(task.co), "\n")
		tasks[task] = nil
		if task.on_error then
			task.on_error(req)
		end
		return
	end
	if coroutine.status(task.co) == "dead" then
		tasks[task] = nil
		if task.on_done then
			task.on_done()
		end
	else
		task.wait = req
	end
end

-- Runs the scheduler until `stop()` is true (checked every round).
function M.run(stop)
	while not stop() do
		local r, w, nearest = {}, {}, 0.2
		local now = socket.gettime()
		for task in pairs(tasks) do
			local wt = task.wait
			if wt == nil then
				nearest = 0
			else
				if wt.sock then
					table.insert(wt.mode == "r" and r or w, wt.sock)
				end
				if wt.deadline then
					nearest = math.min(nearest, math.max(0, wt.deadline - now))
				end
			end
		end
		local readable, writable = socket.select(r, w, nearest)
		now = socket.gettime()
		local ready = {}
		for task in pairs(tasks) do
			local wt = task.wait
			if wt == nil then
				ready[#ready + 1] = { task, true }
			elseif wt.sock and ((wt.mode == "r" and readable[wt.sock]) or (wt.mode == "w" and writable[wt.sock])) then
				ready[#ready + 1] = { task, true }
			elseif wt.deadline and wt.deadline <= now then
				ready[#ready + 1] = { task, wt.sock == nil }
			end
		end
		for _, entry in ipairs(ready) do
			entry[1].wait = nil
			resume(entry[1], entry[2])
		end
	end
end

---------------------------------------------------------------------------------------
-- A fresh Lua state per dispatch: every module loaded after the stand-in is forgotten
-- before each dispatch (the .so stays loaded: its luaopen runs again, as in a new state).

local resident = {}
for name in pairs(package.loaded) do
	resident[name] = true
end
resident["platform"] = true -- this file, required as "platform" by the runner

local function fresh_state()
	for name in pairs(package.loaded) do
		if not resident[name] then
			package.loaded[name] = nil
		end
	end
end

---------------------------------------------------------------------------------------
-- Argument checks as luaL_check* make them

local function bad(fname, pos, what)
	error(("bad argument #%d to '%s' (%s)"):format(pos, fname, what), 3)
end

local function check_integer(fname, pos, v)
	if type(v) ~= "number" then
		bad(fname, pos, "number expected, got " .. (v == nil and "nil" or type(v)))
	end
	if math.tointeger(v) == nil then
		bad(fname, pos, "number has no integer representation")
	end
	return math.tointeger(v)
end

-- An optional integer argument: absent is fine, present must be an integer (nil too).
local function optional_integer(fname, pos, n, v)
	if n >= pos then
		return check_integer(fname, pos, v)
	end
end

---------------------------------------------------------------------------------------
-- Stream sockets: a socket is a table {sock =, active =, fd =}; what Lua gets is a new
-- handle on it per call.

local handle_mt = {
	__name = "streamsocket",
	__tostring = function(h) return ("streamsocket:0x%08x"):format(h._serial) end,
}
local handles_made = 0

local function register(sock)
	sock:settimeout(0)
	sock:setoption("tcp-nodelay", true)
	return { sock = sock, fd = sock:getfd(), active = true }
end

-- A new handle on socket `s`, as every evluaserver call that returns a socket makes.
local function handle(s)
	handles_made = handles_made + 1
	return setmetatable({ _s = s, _serial = handles_made }, handle_mt)
end

local function socket_of(fname, pos, h)
	if getmetatable(h) ~= handle_mt then
		bad(fname, pos, "streamsocket expected, got " .. type(h))
	end
	return h._s
end

local function close_socket(s)
	s.active = false
	s.closed = true
	s.sock:close()
end

-- Reads up to n bytes (at least 1), yielding; raises on end of stream, error or timeout.
local function recv_some(s, n, timeout)
	if s.peeked then -- the byte the WebSocket loop looked at, then what else is there
		local first = s.peeked
		s.peeked = nil
		local data, _, partial = s.sock:receive(n - 1)
		return first .. (data or partial or "")
	end
	while true do
		if s.closed then
			error("recv_data_from_socket: Failed to receive data from socket: Bad file descriptor")
		end
		local data, err, partial = s.sock:receive(n)
		local got = data or partial
		if got and #got > 0 then
			return got
		end
		if err == "closed" then
			s.active = false
			error("recv_data_from_socket: Failed to receive data from socket: Peer closed connection")
		end
		if not wait(s.sock, "r", timeout) then
			error("recv_data_from_socket: Failed to receive data from socket : Connection timed out")
		end
	end
end

local function send_all(s, data, timeout)
	local i = 1
	while i <= #data do
		if s.closed then
			error("send: Bad file descriptor")
		end
		local last, err, partial = s.sock:send(data, i)
		local sent = last or partial
		if sent and sent >= i then
			i = sent + 1
		elseif err == "closed" then
			s.active = false
			error("send: Broken pipe")
		end
		if i <= #data and not wait(s.sock, "w", timeout) then
			error("send: Connection timed out")
		end
	end
	return #data
end

-- Reads an HTTP head (yielding); returns the start line and {name, value} pairs.
local function read_head(s, timeout)
	local raw = ""
	while not raw:find("\r\n\r\n", 1, true) do
		raw = raw .. recv_some(s, 1, timeout) -- byte by byte: never read past the head
		if #raw > 65536 then
			error("head too large")
		end
	end
	local lines = {}
	for line in raw:gmatch("(.-)\r\n") do
		lines[#lines + 1] = line
	end
	local headers = {}
	for i = 2, #lines do
		local k, v = lines[i]:match("^([^:]+):%s*(.-)%s*$")
		if k then
			headers[#headers + 1] = { k, v }
		end
	end
	return lines[1], headers
end

---------------------------------------------------------------------------------------
-- platform.*

local platform = {}
M.platform = platform
M.properties = {}
M.calls = {} -- how often each platform function was called

local function count(name)
	M.calls[name] = (M.calls[name] or 0) + 1
end

local function dispatch_of(fname)
	local d = current and current.conn
	if d == nil or d.s == nil then
		error(fname .. ": no accepted socket in this context")
	end
	return d
end

function platform.recv_data_from_socket(...)
	local n = select("#", ...)
	local h, ptr, size, timeout = ...
	count("recv_data_from_socket")
	local s = socket_of("recv_data_from_socket", 1, h)
	if type(ptr) ~= "table" or ptr.buffer == nil then
		error("recv_data_from_socket: invalid second argumet")
	end
	size = check_integer("recv_data_from_socket", 3, size)
	timeout = optional_integer("recv_data_from_socket", 4, n, timeout)
	local got = recv_some(s, size, (timeout and timeout >= 0) and timeout or nil)
	ptr.buffer:write_at(ptr.offset, got)
	if current and current.conn then
		current.conn.consumed = true
	end
	return #got
end

function platform.send_data_on_acc_socket(...)
	local h, ptr, size = ...
	count("send_data_on_acc_socket")
	local s = socket_of("send_data_on_acc_socket", 1, h)
	size = check_integer("send_data_on_acc_socket", 3, size)
	if s.in_request then
		io.stderr:write("FATAL: platform stand-in: a frame sent on a socket whose Upgrade request has not returned (evluaserver dies here)\n")
		os.exit(6)
	end
	yield_now() -- evluaserver always yields here (the event loop does the send)
	return send_all(s, ptr.buffer:read_at(ptr.offset, size))
end

function platform.send_data_on_socket(...)
	local n = select("#", ...)
	local h, ptr, size, timeout = ...
	count("send_data_on_socket")
	local s = socket_of("send_data_on_socket", 1, h)
	size = check_integer("send_data_on_socket", 3, size)
	timeout = optional_integer("send_data_on_socket", 4, n, timeout)
	return send_all(s, ptr.buffer:read_at(ptr.offset, size), (timeout and timeout >= 0) and timeout or nil)
end

function platform.get_accepted_stream_socket()
	return handle(dispatch_of("get_accepted_stream_socket").s)
end

function platform.get_sock_fd(h)
	local s = socket_of("get_sock_fd", 1, h)
	return s.closed and -1 or s.fd
end

function platform.set_ws_recvd_msg_handler(...)
	if select("#", ...) ~= 1 or type(...) ~= "string" then
		error("evpoco_set_ws_recvd_msg_handler: Invalid datatype of argument (string expected)")
	end
	dispatch_of("set_ws_recvd_msg_handler").s.handler = ...
end

function platform.get_ws_recvd_msg_handler()
	return dispatch_of("get_ws_recvd_msg_handler").s.handler
end

function platform.set_socket_upgrade_to(...)
	if select("#", ...) ~= 1 or math.type(...) ~= "integer" or ... ~= 1 then
		error("evpoco_set_socket_upgrade_to: Invalid argument (only websocket [1] supported)")
	end
	dispatch_of("set_socket_upgrade_to").upgraded = true
end

function platform.set_acc_sock_to_be_closed()
	dispatch_of("set_acc_sock_to_be_closed").close_after = true
end

function platform.shutdown_websocket(...)
	local n = select("#", ...)
	local h, how = ...
	local s = socket_of("shutdown_websocket", 1, h)
	optional_integer("shutdown_websocket", 2, n, how)
	s.active = false
	if not s.closed then
		s.sock:shutdown("send")
	end
end

function platform.websocket_active(h)
	count("websocket_active")
	local s = socket_of("websocket_active", 1, h)
	if s.closed then
		return false -- evluaserver answers an invalid socket at once
	end
	yield_now()
	return s.active
end

function platform.properties_funcs()
	return { get_string_property = function(key) return M.properties[key] end }
end

-- The process-wide pool repository evluaserver keeps in C (libevpoolrepos), as
-- service_utils.common.pool_repos presents it. get_from_pool is left out: this evpoco's
-- never returns a live socket, and the module must not depend on it.
local pool_store = {} -- pool name -> name -> list of sockets
package.preload["service_utils.common.pool_repos"] = function()
	local pool = {}
	local p_mt = { __index = pool }
	function pool:add_to_pool(name, h)
		local s = socket_of("add_to_pool", 3, h)
		local list = self._store[name] or {}
		self._store[name] = list
		list[#list + 1] = s
	end
	-- the next socket in turn (closed ones dropped), left in the pool
	function pool:share_from_pool(name)
		local list = self._store[name] or {}
		while #list > 0 do
			local s = table.remove(list, 1)
			if not s.closed then
				list[#list + 1] = s
				return handle(s)
			end
		end
		return nil
	end
	return {
		new = function(poolname, allow_sharing)
			pool_store[poolname] = pool_store[poolname] or {}
			return setmetatable({ _store = pool_store[poolname], allow_sharing = allow_sharing }, p_mt)
		end,
	}
end

-- Peeks at a readable socket as evluaserver does (here: reads one byte that the next
-- recv_data_from_socket returns first). false: the peer has gone.
local function peek(s)
	while not s.peeked do
		if not wait(s.sock, "r", -1) then
			return false
		end
		local byte, err = s.sock:receive(1)
		if byte == nil and err == "closed" then
			return false
		end
		s.peeked = byte
	end
	return true
end

-- One dispatch of ws.handle_msg in a fresh state; returns its context once it is done.
local function dispatch(s)
	local d = { s = s }
	local done = false
	local task = spawn(function()
		fresh_state()
		require("service_utils.WS.web_socket").handle_msg()
	end, d)
	task.on_done = function() done = true end
	task.on_error = function() done = true end
	while not done do
		yield_now()
	end
	return d
end

-- The WebSocket mode of a socket: each time it is readable, ws.handle_msg in a fresh
-- state, one dispatch at a time; closed when a dispatch asked for it, or without a
-- dispatch when the peer has gone (as evluaserver does). A dispatch that read nothing
-- from a readable socket and left it open is dispatched again at once; a hundred of
-- those in a row are evluaserver's read-error loop.
local function websocket_loop(s)
	local idle_dispatches = 0
	while not s.closed and peek(s) do
		local d = dispatch(s)
		if d.close_after then
			break
		end
		idle_dispatches = d.consumed and 0 or idle_dispatches + 1
		if idle_dispatches >= 100 then
			io.stderr:write(("FATAL: platform stand-in: socket %d dispatched %d times in a row without a read or "
				.. "set_acc_sock_to_be_closed (evluaserver's read-error loop)\n"):format(s.fd, idle_dispatches))
			os.exit(5)
		end
	end
	close_socket(s)
end

function platform.track_ss_as_websocket(...)
	local h, handler = ...
	count("track_ss_as_websocket")
	local s = socket_of("track_ss_as_websocket", 1, h)
	if handler ~= nil and type(handler) ~= "string" then
		error("track_ss_as_websocket: 2nd arument should be nil or string")
	end
	s.handler = handler
	spawn(function() websocket_loop(s) end, {})
	yield_now()
end

-- Client HTTP.
function platform.make_http_connection(...)
	local n = select("#", ...)
	local host, port, timeout = ...
	count("make_http_connection")
	timeout = optional_integer("make_http_connection", 3, n, timeout)
	local sock = socket.tcp()
	sock:settimeout(0)
	local ok, err = sock:connect(host, port)
	if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
		error("make_http_connection: could not establish connection: " .. tostring(err))
	end
	if not ok then
		if not wait(sock, "w", timeout) then
			error("make_http_connection: could not establish connection: Connection timed out")
		end
		if sock:getpeername() == nil then
			error("make_http_connection: could not establish connection: Connection refused")
		end
	end
	local s = register(sock)
	return { s = s }, nil, handle(s), {}
end

function platform.new_request()
	local req = { headers = {}, uri = "/", host = "" }
	function req:set_hdr_field(k, v)
		if type(v) ~= "string" then
			error("set_hdr_field: value must be a string")
		end
		self.headers[#self.headers + 1] = { k, v }
	end
	function req:set_uri(u) self.uri = u end
	function req:set_host(host) self.host = host end
	return req
end

function platform.send_request_header(http_conn, req)
	local lines = {}
	for _, h in ipairs(req.headers) do
		lines[#lines + 1] = h[1] .. ": " .. h[2]
	end
	local head = ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n"):format(req.uri, req.host, table.concat(lines, "\r\n"))
	send_all(http_conn.s, head)
end

function platform.receive_http_response(...)
	local n = select("#", ...)
	local http_conn, timeout = ...
	count("receive_http_response")
	timeout = optional_integer("receive_http_response", 2, n, timeout)
	local start, headers = read_head(http_conn.s, timeout)
	local fields = {}
	for _, h in ipairs(headers) do
		fields[h[1]] = h[2] -- names as the server spelled them, as evluaserver returns them
	end
	local status = tonumber(start:match("^HTTP/1%.%d (%d%d%d)"))
	return {
		get_status = function() return status end,
		get_hdr_fields = function() return fields end,
		read = function() return nil end,
	}
end

---------------------------------------------------------------------------------------
-- The server side: accept, the REST controller's call of ws.accept, then frames.

local function new_request(start, headers, peer)
	local method, uri = start:match("^(%S+) (%S+)")
	local fields = {}
	for _, h in ipairs(headers) do
		fields[h[1]] = h[2] -- names as the client spelled them (Poco keeps them so)
	end
	return setmetatable({}, {
		__tostring = function() return "httpsreq" end,
		__index = {
			get_hdr_fields = function() return fields end,
			get_hdr_field = function(_, name)
				for k, v in pairs(fields) do
					if k:lower() == name:lower() then
						return v
					end
				end
			end,
			get_uri = function() return uri end,
			get_method = function() return method end,
			get_peer = function() return peer end,
		},
	})
end

-- The response object; what it produces is written by finish(), when the request returns.
local function new_response()
	local r = { status = 200, headers = {}, chunked = false, sent = false, out = {} }
	local methods = {}
	function methods:set_status(status) r.status = status end
	function methods:set_hdr_field(k, v) r.headers[#r.headers + 1] = { k, v } end
	function methods:set_content_type(t) r.headers[#r.headers + 1] = { "Content-Type", t } end
	function methods:set_content_length(n) r.content_length = n end
	function methods:set_chunked_trfencoding(on) r.chunked = on end
	function methods:send()
		if r.sent then
			io.stderr:write("FATAL: response:send() called twice: evluaserver would die here\n")
			os.exit(3)
		end
		r.sent = true
		local lines = { ("HTTP/1.1 %d %s"):format(r.status, r.status == 101 and "Switching Protocols" or "Status") }
		for _, h in ipairs(r.headers) do
			lines[#lines + 1] = h[1] .. ": " .. h[2]
		end
		if r.chunked then
			lines[#lines + 1] = "Transfer-Encoding: chunked"
		elseif r.status ~= 101 then
			lines[#lines + 1] = "Content-Length: " .. tostring(r.content_length or 0)
		end
		r.out[#r.out + 1] = table.concat(lines, "\r\n") .. "\r\n\r\n"
	end
	function methods:write(data)
		if r.status == 101 then
			return -- evpoco writes no body after a 101
		end
		r.out[#r.out + 1] = r.chunked and ("%x\r\n%s\r\n"):format(#data, data) or data
	end
	function r.finish(s)
		if r.chunked then
			r.out[#r.out + 1] = "0\r\n\r\n"
		end
		send_all(s, table.concat(r.out))
	end
	return setmetatable({}, { __tostring = function() return "httpsresp" end, __index = methods }), r
end

local function serve_connection(s)
	local d = { s = s }
	current.conn = d
	local ok, err = pcall(function()
		local start, headers = read_head(s, 10)
		local peer = s.sock:getpeername()
		local request = new_request(start, headers, peer)
		local response, state = new_response()
		local upgrade = request:get_hdr_field("Upgrade")
		s.in_request = true
		if upgrade and upgrade:lower() == "websocket" then
			fresh_state()
			require("service_utils.WS.web_socket").accept(request, response, { peer = peer })
		else
			response:set_status(404)
			response:send()
		end
		s.in_request = false
		state.finish(s)
	end)
	if not ok then
		io.stderr:write("platform stand-in: connection failed: ", tostring(err), "\n")
		return close_socket(s)
	end
	if d.upgraded then
		return websocket_loop(s)
	end
	close_socket(s)
end

-- Listens on 127.0.0.1:0 and serves; returns the port.
function M.listen()
	local server = assert(socket.bind("127.0.0.1", 0))
	server:settimeout(0)
	local _, port = server:getsockname()
	spawn(function()
		while true do
			wait(server, "r", -1)
			local client = server:accept()
			if client then
				local s = register(client)
				spawn(function() serve_connection(s) end, {})
			end
		end
	end, {})
	return tonumber(port)
end

-- Runs `fn` as a task with the dispatch context of a script (no accepted socket), in a
-- fresh state.
function M.script(fn)
	return spawn(function()
		fresh_state()
		fn()
	end, {})
end

return M
