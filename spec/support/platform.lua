-- A stand-in for evluaserver's `platform` global, for the specs of the evluaserver runtime.
--
-- Real loopback sockets (luasocket) and a small scheduler of coroutines: every function
-- that yields in evluaserver (recv_data_from_socket, send_data_on_socket,
-- send_data_on_acc_socket, track_ss_as_websocket, websocket_active, make_http_connection,
-- receive_http_response, and the response's send/write) yields the calling coroutine here
-- too, so a yield across a C (Rust) frame fails exactly as it would crash evluaserver.
-- Where evluaserver takes a pointer, this stand-in takes what the glue passes without ffi:
-- {buffer = <core byte buffer>, offset = n}.
local socket = require("socket")

local M = {}

---------------------------------------------------------------------------------------
-- The scheduler

local tasks = {} -- task -> {co =, wait = {sock =, mode =, deadline =}}
local current -- the task running now: {co, conn}

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
-- Stream sockets

local ss_mt = { __tostring = function(ss) return "streamsocket:" .. ss.id end }
local next_id = 0

local function stream_socket(sock)
	next_id = next_id + 1
	sock:settimeout(0)
	sock:setoption("tcp-nodelay", true)
	return setmetatable({ sock = sock, id = next_id, active = true }, ss_mt)
end

-- Reads up to n bytes (at least 1), yielding; raises on EOF, error or timeout.
local function recv_some(ss, n, timeout)
	while true do
		local data, err, partial = ss.sock:receive(n)
		local got = data or partial
		if got and #got > 0 then
			return got
		end
		if err == "closed" then
			ss.active = false
			error("recv_data_from_socket: connection closed by peer")
		end
		if not wait(ss.sock, "r", timeout) then
			error("recv_data_from_socket: timeout")
		end
	end
end

local function send_all(ss, data, timeout)
	local i = 1
	while i <= #data do
		local last, err, partial = ss.sock:send(data, i)
		local sent = last or partial
		if sent and sent >= i then
			i = sent + 1
		elseif err == "closed" then
			ss.active = false
			error("send: connection closed by peer")
		end
		if i <= #data and not wait(ss.sock, "w", timeout) then
			error("send: timeout")
		end
	end
	return #data
end

-- Reads an HTTP head (yielding); returns the start line and {name, value} pairs.
local function read_head(ss, timeout)
	local raw = ""
	while not raw:find("\r\n\r\n", 1, true) do
		raw = raw .. recv_some(ss, 1, timeout) -- byte by byte: never read past the head
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
M.calls = {} -- how often each platform function was called (the specs check some)

local function count(name)
	M.calls[name] = (M.calls[name] or 0) + 1
end

function platform.recv_data_from_socket(ss, ptr, n, timeout)
	count("recv_data_from_socket")
	local got = recv_some(ss, n, timeout)
	ptr.buffer:write_at(ptr.offset, got)
	return #got
end

function platform.send_data_on_acc_socket(ss, ptr, n)
	count("send_data_on_acc_socket")
	return send_all(ss, ptr.buffer:read_at(ptr.offset, n))
end

function platform.send_data_on_socket(ss, ptr, n, timeout)
	count("send_data_on_socket")
	return send_all(ss, ptr.buffer:read_at(ptr.offset, n), timeout)
end

function platform.get_accepted_stream_socket()
	return current.conn.ss
end

function platform.set_ws_recvd_msg_handler(name)
	current.conn.handler = name
end

function platform.get_ws_recvd_msg_handler()
	return current.conn.handler
end

function platform.set_socket_upgrade_to(v)
	current.conn.upgraded = (v == 1)
end

function platform.set_acc_sock_to_be_closed()
	current.conn.close_after = true
end

function platform.set_acc_sock_state()
	current.conn.close_after = true
end

function platform.shutdown_websocket(ss)
	ss.active = false
	ss.sock:shutdown("send")
end

function platform.websocket_active(ss)
	count("websocket_active")
	yield_now()
	return ss.active
end

function platform.properties_funcs()
	return { get_string_property = function(key) return M.properties[key] end }
end

-- Serves frames arriving on `conn.ss` one ws.handle_msg call at a time, as evluaserver
-- does for upgraded and tracked sockets.
local function websocket_loop(conn, request, response)
	local ws = require("service_utils.WS.web_socket")
	while conn.ss.active and not conn.close_after do
		if not wait(conn.ss.sock, "r", -1) then
			break
		end
		local done, failed = false, false
		local task = spawn(function() ws.handle_msg(request, response) end, conn)
		task.on_done = function() done = true end
		task.on_error = function() done, failed = true, true end
		while not done do
			yield_now()
		end
		if failed then
			break
		end
	end
	conn.ss.active = false
	conn.ss.sock:close()
end

function platform.track_ss_as_websocket(ss, handler)
	count("track_ss_as_websocket")
	spawn(function() websocket_loop({ ss = ss, handler = handler }) end, { ss = ss, handler = handler })
	yield_now()
end

-- Client HTTP.
function platform.make_http_connection(host, port, timeout)
	count("make_http_connection")
	local sock = socket.tcp()
	sock:settimeout(0)
	local ok, err = sock:connect(host, port)
	if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
		return nil, err
	end
	if not ok then
		if not wait(sock, "w", timeout) then
			return nil, "timeout"
		end
		if sock:getpeername() == nil then
			return nil, "connection refused"
		end
	end
	local ss = stream_socket(sock)
	return { ss = ss }, nil, ss, nil
end

function platform.new_request()
	local req = { headers = {}, uri = "/", host = "" }
	function req:set_hdr_field(k, v) self.headers[#self.headers + 1] = { k, tostring(v) } end
	function req:set_uri(u) self.uri = u end
	function req:set_host(h) self.host = h end
	function req:set_content_length() end
	function req:set_expect_continue() end
	function req:set_content_type() end
	function req:write() end
	return req
end

function platform.send_request_header(http_conn, req)
	local method = "GET"
	local lines = {}
	for _, h in ipairs(req.headers) do
		if h[1] == "method" then
			method = h[2]
		else
			lines[#lines + 1] = h[1] .. ": " .. h[2]
		end
	end
	local head = ("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n"):format(method, req.uri, req.host, table.concat(lines, "\r\n"))
	send_all(http_conn.ss, head)
end

function platform.receive_http_response(http_conn, timeout)
	count("receive_http_response")
	local start, headers = read_head(http_conn.ss, timeout)
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

local function new_response(ss)
	local r = { status = 200, headers = {}, chunked = false, sent = false }
	local methods = {}
	function methods:set_status(s) r.status = s end
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
		send_all(ss, table.concat(lines, "\r\n") .. "\r\n\r\n")
	end
	function methods:write(data)
		if r.chunked then
			send_all(ss, ("%x\r\n%s\r\n"):format(#data, data))
		else
			send_all(ss, data)
		end
	end
	function r.finish()
		if r.chunked then
			send_all(ss, "0\r\n\r\n")
		end
	end
	return setmetatable({}, { __tostring = function() return "httpsresp" end, __index = methods }), r
end

local function serve_connection(sock)
	local ss = stream_socket(sock)
	local conn = { ss = ss }
	current.conn = conn
	local ok, err = pcall(function()
		local start, headers = read_head(ss, 10)
		local peer = sock:getpeername()
		local request = new_request(start, headers, peer)
		local response, state = new_response(ss)
		local upgrade = request:get_hdr_field("Upgrade")
		if upgrade and upgrade:lower() == "websocket" then
			local ws = require("service_utils.WS.web_socket")
			ws.accept(request, response, { peer = peer })
		else
			response:set_status(404)
			response:send()
		end
		state.finish()
		if conn.upgraded then
			return websocket_loop(conn, request, response)
		end
		ss.sock:close()
	end)
	if not ok then
		io.stderr:write("platform stand-in: connection failed: ", tostring(err), "\n")
		ss.sock:close()
	end
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
				spawn(function() serve_connection(client) end, {})
			end
		end
	end, {})
	return tonumber(port)
end

return M
