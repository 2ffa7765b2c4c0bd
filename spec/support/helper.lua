-- Test helper: starts servers in child processes and speaks WebSocket over raw
-- luasocket TCP connections, building and parsing frames byte by byte on its own (an
-- implementation independent of the module's codec).
local socket = require("socket")

local M = {}

-- The servers run on the same Lua as busted.
M.LUA = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
M.CPATH_ROOT = os.getenv("WS_CPATH_ROOT") or ("build/" .. M.LUA)
M.ARTIFACTS = "spec/artifacts"
M.PYTHON = os.getenv("WS_PYTHON") or "build/venv/bin/python"
M.TIMEOUT = 5

os.execute("mkdir -p " .. M.ARTIFACTS)
-- The busted process itself loads the module too (the client specs use it).
package.cpath = M.CPATH_ROOT .. "/?.so;" .. package.cpath

-- Whether a shell command exited 0 (os.execute returns true on 5.2+, 0 on 5.1/LuaJIT).
local function exec_ok(cmd)
	local r = os.execute(cmd)
	return r == true or r == 0
end
M.exec_ok = exec_ok

local server_count = 0
-- Servers started and not yet stopped: stop_all() ends them, so that a failing test
-- cannot leave a process behind (busted would wait for it at exit).
local running = {}

-- Starts `command` (a shell command that prints "listening on ws://HOST:PORT" once it
-- serves) as a child process; returns a record with port, pid, log (its stderr) and
-- stop(signal). `name` names the log file.
function M.start_process(command, name)
	server_count = server_count + 1
	local log = ("%s/%s-%d-%d.log"):format(M.ARTIFACTS, name, os.time(), server_count)
	-- The shell io.popen starts waits for the command (and so reaps it: a stopped process
	-- does not linger as a zombie that `kill -0` still finds); its own stderr goes nowhere,
	-- so that it does not report "Terminated" / "Killed" into the test output.
	local out = assert(io.popen(("exec 2>/dev/null; sh -c 'echo $$; %s 2>%s'"):format(command, log), "r"))
	local pid = assert(tonumber(out:read("*l")), "no pid from " .. name)
	local line = out:read("*l")
	local port = line and tonumber(line:match("listening on wss?://[%w%.]+:(%d+)"))
	if not port then
		os.execute("kill -9 " .. pid)
		error(name .. " did not start: " .. tostring(line) .. "\n" .. M.read_file(log))
	end
	local server = { pid = pid, port = port, log = log, out = out }
	-- Sends `sig` (default TERM) and waits (bounded) for the process to end; returns
	-- the rest of its stdout.
	function server.stop(sig)
		os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", pid))
		local deadline = socket.gettime() + 10
		while socket.gettime() < deadline and exec_ok(("kill -0 %d 2>/dev/null"):format(pid)) do
			socket.sleep(0.05)
		end
		if exec_ok(("kill -0 %d 2>/dev/null"):format(pid)) then
			os.execute("kill -9 " .. pid)
		end
		running[server] = nil
		local rest = out:read("*a")
		out:close()
		return rest
	end
	function server.alive()
		return exec_ok(("kill -0 %d 2>/dev/null"):format(pid))
	end
	running[server] = true
	return server
end

-- Starts spec/support/server.lua (the module's server) with options {key = value}. It
-- runs with SIGPIPE at its default (the process dies of it), as a server started from a
-- shell does: busted's luasocket ignores SIGPIPE, and children would inherit that.
-- `env` adds environment variables ({NAME = value}).
function M.start_server(options, script, env)
	local args, vars = {}, {}
	for k, v in pairs(options or {}) do
		args[#args + 1] = k .. "=" .. tostring(v)
	end
	for k, v in pairs(env or {}) do
		vars[#vars + 1] = ('%s="%s"'):format(k, v)
	end
	return M.start_process(('%s LUA_CPATH="%s/?.so;;" exec env --default-signal=PIPE %s %s %s'):format(
		table.concat(vars, " "), M.CPATH_ROOT, M.LUA, script or "spec/support/server.lua", table.concat(args, " ")), "server")
end

-- Starts spec/support/py_server.py with its arguments (Python's websockets, or a raw
-- misbehaving server).
function M.start_python(...)
	return M.start_process(("exec %s spec/support/py_server.py %s"):format(M.PYTHON, table.concat({ ... }, " ")), "py_server")
end

-- Starts spec/support/node_server.js (Node's ws); `mode` "deflate" turns permessage-deflate on.
function M.start_node(mode)
	return M.start_process("NODE_PATH=build/node/node_modules exec node spec/support/node_server.js " .. (mode or ""),
		"node_server")
end

-- A self-signed certificate for 127.0.0.1 / localhost, made once per run: cert, key paths.
function M.certificate()
	local cert, key = M.ARTIFACTS .. "/test-cert.pem", M.ARTIFACTS .. "/test-key.pem"
	if not io.open(cert) then
		assert(exec_ok(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 -subj /CN=localhost " ..
			"-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null"):format(key, cert)))
	end
	return cert, key
end

-- Stops every server still running (for after_each / teardown).
function M.stop_all()
	for server in pairs(running) do
		server.stop("KILL")
	end
end

function M.read_file(path)
	local f = io.open(path, "rb")
	if not f then
		return ""
	end
	local s = f:read("*a")
	f:close()
	return s
end

-- Waits (bounded) until `pred()` is true.
function M.eventually(pred, seconds)
	local deadline = socket.gettime() + (seconds or M.TIMEOUT)
	repeat
		if pred() then
			return true
		end
		socket.sleep(0.05)
	until socket.gettime() > deadline
	return pred()
end

function M.tcp(port)
	local sock = assert(socket.tcp())
	sock:settimeout(M.TIMEOUT)
	assert(sock:connect("127.0.0.1", port))
	sock:setoption("tcp-nodelay", true)
	return sock
end

M.KEY = "dGhlIHNhbXBsZSBub25jZQ=="
M.ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

-- The raw text of an Upgrade request; `headers` replaces or (value false) removes the
-- standard ones.
function M.upgrade_request(path, headers)
	local std = {
		{ "Host", "127.0.0.1" },
		{ "Upgrade", "websocket" },
		{ "Connection", "Upgrade" },
		{ "Sec-WebSocket-Key", M.KEY },
		{ "Sec-WebSocket-Version", "13" },
	}
	headers = headers or {}
	local lines = { ("GET %s HTTP/1.1"):format(path) }
	for _, h in ipairs(std) do
		local v = headers[h[1]]
		if v == nil then
			lines[#lines + 1] = h[1] .. ": " .. h[2]
		elseif v then
			lines[#lines + 1] = h[1] .. ": " .. v
		end
	end
	for k, v in pairs(headers) do
		local standard = false
		for _, h in ipairs(std) do
			standard = standard or h[1] == k
		end
		if not standard and v then
			lines[#lines + 1] = k .. ": " .. v
		end
	end
	return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Reads an HTTP response: status, headers (lowercased names), body, raw head text.
function M.read_response(sock)
	local status_line, err = sock:receive("*l")
	if not status_line then
		return nil, err
	end
	local status = tonumber(status_line:match("^HTTP/1%.1 (%d%d%d)"))
	local headers, raw = {}, { status_line }
	while true do
		local line = assert(sock:receive("*l"))
		if line == "" then
			break
		end
		raw[#raw + 1] = line
		local k, v = line:match("^([^:]+):%s*(.-)%s*$")
		headers[k:lower()] = v
	end
	local body = ""
	if status ~= 101 then
		if headers["transfer-encoding"] == "chunked" then
			local parts = {}
			while true do
				local size = tonumber(assert(sock:receive("*l")), 16)
				if size == 0 then
					assert(sock:receive("*l"))
					break
				end
				parts[#parts + 1] = assert(sock:receive(size))
				assert(sock:receive("*l"))
			end
			body = table.concat(parts)
		elseif tonumber(headers["content-length"] or "0") > 0 then
			body = assert(sock:receive(tonumber(headers["content-length"])))
		end
	end
	return { status = status, headers = headers, body = body, head = table.concat(raw, "\r\n") }
end

-- Sends raw bytes on a fresh connection and returns the HTTP response.
function M.raw_request(port, bytes)
	local sock = M.tcp(port)
	assert(sock:send(bytes))
	local res = M.read_response(sock)
	sock:close()
	return res
end

-- Opens a WebSocket on `path`; returns the socket and the 101 response.
function M.open(port, path, headers)
	local sock = M.tcp(port)
	assert(sock:send(M.upgrade_request(path, headers)))
	local res = assert(M.read_response(sock))
	assert(res.status == 101, "expected 101, got " .. tostring(res.status) .. " " .. res.body)
	return sock, res
end

-- Whether the server on `port` still answers: a fresh connection to /echo gets `text`
-- back. For the claim "the server survived that".
function M.echoes(port, text)
	text = text or "still here"
	local sock = M.open(port, "/echo")
	sock:send(M.frame(M.OP.TEXT, text))
	local ok = M.read_frame(sock).payload == text
	sock:close()
	return ok
end

-- A number a spec/support/server.lua server counts, asked through /control: "max_queued"
-- (stats().max_queued_bytes: the most bytes any connection has had queued) or
-- "max_inflated" (stats().max_inflated_bytes: the most a compressed message inflated to).
function M.stat(server, name)
	local control = M.open(server.port, "/control")
	control:send(M.frame(M.OP.TEXT, name))
	local n = tonumber(M.read_frame(control).payload)
	control:close()
	return n
end

-- Sends an Upgrade request and returns the (refusal) response.
function M.request(port, path, headers)
	return M.raw_request(port, M.upgrade_request(path, headers))
end

M.OP = { CONT = 0, TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9, PONG = 10 }

-- The helpers below use arithmetic only, so that they run on every Lua the module
-- supports (5.1 and LuaJIT have no bitwise operators, 5.1 no string.pack).
local unpack = table.unpack or unpack

-- XOR of two bytes, from a table built once.
local XOR = {}
for a = 0, 255 do
	for b = 0, 255 do
		local r, bit, x, y = 0, 1, a, b
		for _ = 1, 8 do
			if x % 2 ~= y % 2 then
				r = r + bit
			end
			x, y, bit = math.floor(x / 2), math.floor(y / 2), bit * 2
		end
		XOR[a * 256 + b] = r
	end
end

local function xor_mask(payload, mask)
	local m = { mask:byte(1, 4) }
	local out = {}
	for i = 1, #payload, 4096 do
		local chunk = { payload:byte(i, math.min(i + 4095, #payload)) }
		for j = 1, #chunk do
			chunk[j] = XOR[chunk[j] * 256 + m[((i + j - 2) % 4) + 1]]
		end
		out[#out + 1] = string.char(unpack(chunk))
	end
	return table.concat(out)
end

-- `n` as `bytes` big-endian bytes, and back.
local function be(n, bytes)
	local out = {}
	for i = bytes, 1, -1 do
		out[i] = n % 256
		n = math.floor(n / 256)
	end
	return string.char(unpack(out))
end

local function from_be(s)
	local n = 0
	for i = 1, #s do
		n = n * 256 + s:byte(i)
	end
	return n
end

-- Builds one frame. opts: fin (default true), mask (4-byte string, default fixed;
-- false for an unmasked frame), rsv (bits 0x70), len (announced length override).
function M.frame(opcode, payload, opts)
	opts = opts or {}
	payload = payload or ""
	local b1 = (opts.fin ~= false and 128 or 0) + (opts.rsv or 0) + opcode
	local mask = opts.mask == nil and "\55\250\33\61" or opts.mask
	local mbit = mask and 128 or 0
	local len = opts.len or #payload
	local head
	if len < 126 then
		head = string.char(b1, mbit + len)
	elseif len <= 65535 then
		head = string.char(b1, mbit + 126) .. be(len, 2)
	else
		head = string.char(b1, mbit + 127) .. be(len, 8)
	end
	if mask then
		return head .. mask .. xor_mask(payload, mask)
	end
	return head .. payload
end

-- Reads one frame: {fin, rsv, opcode, masked, payload}; nil, err on timeout/close.
function M.read_frame(sock)
	local h, err = sock:receive(2)
	if not h then
		return nil, err
	end
	local b1, b2 = h:byte(1, 2)
	local len = b2 % 128
	if len == 126 then
		len = from_be(assert(sock:receive(2)))
	elseif len == 127 then
		len = from_be(assert(sock:receive(8)))
	end
	local mask
	if b2 >= 128 then
		mask = assert(sock:receive(4))
	end
	local payload = ""
	if len > 0 then
		payload, err = sock:receive(len)
		if not payload then
			return nil, err
		end
	end
	if mask then
		payload = xor_mask(payload, mask)
	end
	return { fin = b1 >= 128, rsv = math.floor(b1 / 16) % 8 * 16, opcode = b1 % 16, masked = mask ~= nil, payload = payload }
end

-- Reads frames until a close frame; returns its code (or nil for an empty body), its
-- reason, and the frames read before it.
function M.read_close(sock)
	local before = {}
	while true do
		local f, err = M.read_frame(sock)
		if not f then
			return nil, "no close frame: " .. tostring(err), before
		end
		if f.opcode == M.OP.CLOSE then
			if #f.payload >= 2 then
				return from_be(f.payload:sub(1, 2)), f.payload:sub(3), before, f
			end
			return false, "", before, f
		end
		before[#before + 1] = f
	end
end

function M.close_payload(code, reason)
	return be(code, 2) .. (reason or "")
end

-- Whether the server has closed the TCP connection (reads until EOF, bounded).
function M.closed_by_peer(sock)
	local _, err = sock:receive("*a")
	return err == nil or err == "closed"
end

-- Runs a shell command (bounded by the caller's `timeout`); returns its output lines.
function M.lines_of(command)
	local p = assert(io.popen(command .. " 2>&1"))
	local lines = {}
	for line in p:lines() do
		lines[#lines + 1] = line
	end
	p:close()
	return lines
end

-- Asserts that a peer script printed at least `expected` lines, all of them "ok ...".
function M.all_ok(lines, expected)
	assert(#lines >= expected, "expected " .. expected .. " results, got:\n" .. table.concat(lines, "\n"))
	for _, line in ipairs(lines) do
		assert(line:match("^ok "), "a check failed:\n" .. table.concat(lines, "\n"))
	end
end

-- ws.connect in this Lua state to `url` with the required inputs (timeout 5 s) and
-- `extra` ones.
function M.connect(url, extra)
	local inputs = { url = url, hdrs = {}, external = false, timeout = 5 }
	for k, v in pairs(extra or {}) do
		inputs[k] = v
	end
	return require("service_utils.WS.web_socket").connect(inputs)
end

-- Sends `command` as a text frame and returns the payload of the next frame.
function M.ask(sock, command)
	assert(sock:send(M.frame(M.OP.TEXT, command)))
	return assert(M.read_frame(sock)).payload
end

-- On a connection to spec/support/handlers/pubsub.lua: its server's stats().pubsub as
-- the handler's "redis" command reports it (numbers as numbers, connected as a string).
function M.redis_stats(sock)
	local t = {}
	for k, v in M.ask(sock, "redis"):gmatch("(%w+)=(%w+)") do
		t[k] = tonumber(v) or v
	end
	return t
end

-- The next frame on `sock` within `seconds`, or nil.
function M.next_frame(sock, seconds)
	sock:settimeout(seconds)
	local f = M.read_frame(sock)
	sock:settimeout(10)
	return f
end

-- A free TCP port on 127.0.0.1 (bound and released: for servers that need a fixed one).
function M.free_port()
	local s = assert(socket.bind("127.0.0.1", 0))
	local _, port = s:getsockname()
	s:close()
	return tonumber(port)
end

-- Starts `command` (a daemon of another project: Redis, a proxy) in the background, its
-- output appended to `log`; returns {port, pid, stop()} once 127.0.0.1:`port` accepts.
-- stop() ends it by its PID and waits (bounded) until it is gone.
function M.start_daemon(name, command, port, log)
	local out = assert(io.popen(("sh -c 'echo $$; exec %s >>%s 2>&1' &"):format(command, log), "r"))
	local pid = assert(tonumber(out:read("*l")), "no pid from " .. name)
	out:close()
	assert(M.eventually(function()
		local c = socket.connect("127.0.0.1", port)
		if c then c:close() end
		return c ~= nil
	end, 10), name .. " did not start:\n" .. M.read_file(log))
	return {
		port = port,
		pid = pid,
		stop = function()
			os.execute(("kill %d 2>/dev/null"):format(pid))
			assert(M.eventually(function() return not exec_ok(("kill -0 %d 2>/dev/null"):format(pid)) end, 10),
				name .. " did not stop")
		end,
	}
end

-- Runs spec/support/py_client.py with arguments; returns its stdout lines.
function M.python(...)
	local args = { ... }
	for i, a in ipairs(args) do
		args[i] = "'" .. tostring(a) .. "'"
	end
	return M.lines_of(("timeout 60 %s spec/support/py_client.py %s"):format(M.PYTHON, table.concat(args, " ")))
end

return M
