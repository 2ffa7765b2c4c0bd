-- service_utils.WS reconnect: ws.connect{..., msg_handler = "m", reconnect = true | {initial =,
-- max =, factor =}} (standalone runtime). The connection object it returns outlives the
-- connections under it: after a drop it reconnects with RFC 6455 §7.2.3's backoff — a random
-- first delay up to `initial` seconds, then `initial` × `factor`^n up to `max` — calling the
-- handler's handle_open(conn) after every handshake and handle_close(msg) after every drop.
-- While it is down, send / try_send / ping return nil, "reconnecting"; conn:close() ends it
-- for good. Messages queued on a connection that drops are lost with it.
--
-- Loaded by web_socket.lua with (connect, sleep, load_handler); returns connect_reconnecting.
local connect, sleep, load_handler = ...

local DEFAULTS = { initial = 1, max = 30, factor = 2 }

local function policy_of(r)
	if r == true then
		return DEFAULTS
	end
	if type(r) ~= "table" then
		error(("connect: inputs.reconnect must be true or a table {initial =, max =, factor =}, got %s"):format(type(r)), 4)
	end
	local p = {}
	for k, default in pairs(DEFAULTS) do
		local v = r[k]
		if v == nil then
			v = default
		elseif type(v) ~= "number" or v < 0 or (k == "factor" and v < 1) then
			error(("connect: inputs.reconnect.%s must be a number %s, got %s"):format(k, k == "factor" and ">= 1" or ">= 0",
				tostring(v)), 4)
		end
		p[k] = v
	end
	return p
end

local methods = {}
local mt = {
	__index = function(self, k)
		local m = methods[k]
		if m ~= nil then
			return m
		end
		local conn = rawget(self, "_conn")
		return conn and conn[k]
	end,
	__tostring = function(self)
		return "ws_connection (reconnecting) " .. tostring(rawget(self, "_conn") or "down")
	end,
}

local function current(self)
	local conn = rawget(self, "_conn")
	if conn ~= nil and conn:is_open() then
		return conn
	end
end

for _, name in ipairs({ "send", "try_send", "ping" }) do
	methods[name] = function(self, ...)
		local conn = current(self)
		if conn == nil then
			if self._closed then
				return nil, name .. ": connection is closed", "closed"
			end
			return nil, "reconnecting", "reconnecting"
		end
		return conn[name](conn, ...)
	end
end

function methods.is_open(self)
	return current(self) ~= nil
end

-- close([code [, reason]]): ends it for good (no more reconnects).
function methods.close(self, code, reason)
	self._closed = true
	local conn = rawget(self, "_conn")
	if conn ~= nil and conn:is_open() then
		return conn:close(code, reason)
	end
	return true
end

function methods.recv()
	error("Cannot invoke ws_util.recv_frame when message_handler is set for the websocket", 2)
end

local serial = 0

-- connect_reconnecting(inputs) -> connection, status, headers | nil, message, kind. The
-- first connection must succeed; reconnects happen after drops.
return function(inputs)
	local policy = policy_of(inputs.reconnect)
	if inputs.msg_handler == nil then
		error("connect: inputs.reconnect needs inputs.msg_handler (a reconnecting connection delivers to a handler)", 3)
	end
	local user, err = load_handler(inputs.msg_handler)
	if user == nil then
		return nil, ("connect: msg_handler module '%s' failed to load: %s"):format(inputs.msg_handler, err), "handler"
	end
	local self = setmetatable({ _closed = false, delays = {}, retrying = false }, mt)
	serial = serial + 1
	local name = "service_utils.WS.reconnecting." .. serial
	local each = {}
	for k, v in pairs(inputs) do
		each[k] = v
	end
	each.reconnect, each.msg_handler = nil, name

	-- The handler the connections under it use: the user's, with the wrapper as msg.conn.
	local h = {}
	function h.handle_open(conn)
		self._conn = conn
		if user.handle_open then
			user.handle_open(self)
		end
	end
	function h.handle_message(msg)
		msg.conn, msg._ss = self, self
		return user.handle_message(msg)
	end
	for _, hook in ipairs({ "handle_ping", "handle_pong", "handle_timeout" }) do
		if user[hook] then
			h[hook] = function(msg)
				msg.conn, msg._ss = self, self
				return user[hook](msg)
			end
		end
	end
	function h.handle_close(msg)
		self._conn = nil
		msg.conn, msg._ss = self, self
		if user.handle_close then
			user.handle_close(msg)
		end
		-- Reconnect from this handler's coroutine: it sleeps without stopping anything.
		-- `retrying` says whether this loop runs (after close() it ends, for good).
		local attempt = 0
		self.retrying = not self._closed
		while not self._closed do
			local delay
			if attempt == 0 then
				delay = math.random() * policy.initial
			else
				delay = math.min(policy.initial * policy.factor ^ attempt, policy.max)
			end
			attempt = attempt + 1
			self.delays[#self.delays + 1] = delay
			sleep(delay)
			if self._closed or connect(each) then
				break
			end
		end
		self.retrying = false
	end
	package.loaded[name] = h

	local conn, status, headers = connect(each)
	if conn == nil then
		package.loaded[name] = nil
		return nil, status, headers
	end
	self._conn = self._conn or conn
	return self, status, headers
end
