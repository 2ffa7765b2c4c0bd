-- service_utils.WS.web_socket: the module table and `ws.accept`, the judge of every
-- WebSocket Upgrade request.
--
-- Design criteria:
--  * Drop-in for the evluaserver original: same functions, arguments, return values and
--    error strings. `ws.accept` stays Lua because handler `init` functions may yield.
--  * The byte work (header checks, accept key, routing, JSON) is Rust, passed in as `core`.
--  * Module resolution is a security boundary: a URL path only ever names a module under
--    the configured base namespace, made of plain identifiers, checked before `require`.
--  * Failures a client causes are 400 answers with a message it can act on; failures of
--    the server's own code are logged with the handler's name.
--  * Two runtimes: with the `platform` global (evluaserver) the I/O paths come from
--    platform.lua; without it, the Rust standalone runtime serves and connects.
local core = ...

local ws = {}

ws.WEBSOCKET_GUID = core.GUID
ws.WEBSOCKET_VERSION = core.VERSION
-- This module's version (CHANGELOG.md; the rockspec of the release carries it too).
ws._VERSION = core.MODULE_VERSION

-- The evluaserver runtime, when running inside evluaserver.
local evl = rawget(_G, "platform") ~= nil and assert(load(core.platform_source, "@service_utils/WS/platform.lua"))(core, ws) or nil

-- A setting the standalone server hands over on its request object (evluaserver's
-- request objects carry none).
local function server_setting(request, key)
	if evl then
		return nil
	end
	return request[key]
end

-- Answers a refused handshake the way the original does: status 400 (or `status`), JSON
-- body {"error_message": ...}, the same JSON in an X-msg header.
local function reject(response, message, advertise_version, status)
	local json = core.json_error(message)
	response:set_status(status or 400)
	response:set_chunked_trfencoding(true)
	response:set_content_type("application/json")
	response:set_hdr_field("X-msg", json)
	if advertise_version then
		response:set_hdr_field("Sec-WebSocket-Version", ws.WEBSOCKET_VERSION)
	end
	response:send()
	response:write(json)
	return false
end

-- The namespace handler modules live under: the REST controller's appBasePath property
-- under evluaserver, the server's option in standalone mode (nil: the server routes only
-- the exact paths of its `routes`).
local function handler_base(request)
	if evl then
		return evl.handler_base()
	end
	return request.handler_base
end

-- Whether `list` (nil: no restriction) allows the request's Origin. Requests without an
-- Origin header (non-browser clients) are not restricted: Origin is what browsers send.
local function origin_allowed(list, origin)
	if list == nil or origin == nil then
		return true
	end
	for _, allowed in ipairs(list) do
		if allowed == "*" or allowed:lower() == origin:lower() then
			return true
		end
	end
	return false
end

-- Picks the subprotocol: the first of the handler's `subprotocols` (its order of
-- preference) that the client offers. Returns the name, false for none, or nil and a
-- message when the handler sets `require_subprotocol` and nothing matches.
local function choose_subprotocol(request, handler)
	local spoken = handler.subprotocols
	if spoken == nil then
		return false
	end
	local offered = {}
	for token in (request:get_hdr_field("Sec-WebSocket-Protocol") or ""):gmatch("[^,%s]+") do
		offered[token] = true
	end
	for _, name in ipairs(spoken) do
		if offered[name] then
			return name
		end
	end
	if handler.require_subprotocol then
		return nil, "No supported subprotocol: this endpoint speaks " .. table.concat(spoken, ", ")
	end
	return false
end

-- Loads a handler class; returns it, or nil and the message for the client.
local function load_handler(name)
	local ok, handler = pcall(require, name)
	if not ok then
		local err = tostring(handler)
		if err:find("module '" .. name .. "' not found", 1, true) then
			return nil, "WebSocket handler module '" .. name .. "' not found"
		end
		core.log("handler module '" .. name .. "' failed to load: " .. err)
		return nil, "WebSocket handler module '" .. name .. "' failed to load"
	end
	if type(handler) ~= "table" or type(handler.handle_message) ~= "function" then
		return nil, "WebSocket handler module '" .. name .. "' has no handle_message function"
	end
	return handler
end

-- ws.accept(request, response, uc) -> true, handler_name, handler, deflate | false
-- Validates the Upgrade request, resolves the handler class from the URL path, calls its
-- init(request, response, uc) and answers 101, or answers 400 and returns false.
function ws.accept(request, response, uc)
	assert(request ~= nil and tostring(request) == "httpsreq", "ws.accept: request must be an httpsreq object")
	assert(response ~= nil and tostring(response) == "httpsresp", "ws.accept: response must be an httpsresp object")

	local key, err, advertise_version = core.check_upgrade(request:get_method(), request:get_hdr_fields())
	if not key then
		return reject(response, err, advertise_version)
	end

	local origin = request:get_hdr_field("Origin")
	if not origin_allowed(server_setting(request, "allowed_origins"), origin) then
		return reject(response, "Origin '" .. origin .. "' is not allowed", false, 403)
	end

	local uri = request:get_uri()
	local path = uri:match("^[^?#]*")
	local name = server_setting(request, "route")
	if name == nil then
		local base = handler_base(request)
		if base == nil then
			return reject(response, "No WebSocket endpoint at '" .. path .. "'", false, 404)
		end
		name, err = core.handler_module(uri, base)
		if not name then
			return reject(response, err)
		end
	end

	local handler
	handler, err = load_handler(name)
	if not handler then
		return reject(response, err)
	end

	if not origin_allowed(handler.origins, origin) then
		return reject(response, "Origin '" .. origin .. "' is not allowed on " .. name, false, 403)
	end

	local subprotocol
	subprotocol, err = choose_subprotocol(request, handler)
	if subprotocol == nil then
		return reject(response, err)
	end
	if type(uc) == "table" then
		uc.subprotocol = subprotocol or nil
	end

	if handler.init ~= nil then
		local ok, msg = handler.init(request, response, uc)
		if not ok then
			return reject(response, msg ~= nil and tostring(msg) or ("WebSocket handler '" .. name .. "' refused the connection"))
		end
	end

	-- permessage-deflate: the handler class's `compression` (false, true or a table) wins
	-- over the server's option; the agreement goes to the runtime with the connection.
	local extensions, deflate = core.negotiate_deflate(request:get_hdr_field("Sec-WebSocket-Extensions"),
		handler.compression, server_setting(request, "compression"))

	response:set_status(101)
	response:set_hdr_field("Upgrade", "websocket")
	response:set_hdr_field("Connection", "Upgrade")
	response:set_hdr_field("Sec-WebSocket-Accept", core.accept_key(key))
	if subprotocol then
		response:set_hdr_field("Sec-WebSocket-Protocol", subprotocol)
	end
	if extensions then
		response:set_hdr_field("Sec-WebSocket-Extensions", extensions)
	end
	if evl then
		evl.upgrade(name, path, uri:match("%?([^#]*)"), subprotocol, deflate)
	end
	response:set_content_length(0)
	response:send()
	if evl then
		evl.opened(handler)
	end
	return true, name, handler, deflate
end

-- ws.server{host =, port =, handler_base = | routes =, max_message_size =, ...} -> server
-- Binds at once (port 0 picks a free port: read it back as server.port);
-- server:run() serves until server:stop() or SIGINT/SIGTERM. Which modules clients can
-- reach must be said: `routes` (exact paths, each module loaded here, now) and/or
-- `handler_base` (a namespace; "" is the explicit opt-in to every module on package.path).
function ws.server(options)
	if type(options) == "table" and type(options.routes) == "table" then
		for path, name in pairs(options.routes) do
			if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[?#]") then
				error(("ws.server: routes: '%s' is not a path (it must start with '/' and hold no query)"):format(tostring(path)), 2)
			end
			if type(name) ~= "string" then
				error(("ws.server: routes['%s'] must be a module name, got %s"):format(path, type(name)), 2)
			end
			local _, why = load_handler(name)
			if why then
				error(("ws.server: routes['%s']: %s"):format(path, why), 2)
			end
		end
	end
	return core.server(options)
end

-- ws.connect{url =, hdrs =, external =, msg_handler =, secure =, timeout =, credentials =,
--             ca_file =, verify =, proxy =, compression =, reconnect =}
--   -> connection, status, headers | nil, message, kind
-- From the main chunk it keeps every server and connection going while it waits; from a
-- handler it suspends that handler only. With `reconnect` (standalone runtime) the
-- connection comes back after drops (lua/reconnect.lua).
if evl then
	ws.connect = evl.connect
else
	local connect_reconnecting = assert((loadstring or load)(core.reconnect_source, "@service_utils/WS/reconnect.lua"))(
		core.connect, core.sleep, load_handler)
	function ws.connect(inputs)
		if type(inputs) == "table" and inputs.reconnect then
			return connect_reconnecting(inputs)
		end
		return core.connect(inputs)
	end
end

-- ws.publish(topic, data [, {msg_type =, exclude = conn}]) -> recipients: server:publish on
-- every server of this Lua state (for handlers, which do not hold the server); under
-- evluaserver, on every connection of the process.
ws.publish = evl and evl.publish or core.publish

-- ws.sleep(seconds): inside a handler suspends only that handler; from the main chunk
-- keeps serving every server and connection while it waits.
ws.sleep = core.sleep

-- Running inside another program's event loop (lua/hosts.lua, docs/hosts.md):
-- ws.step([timeout]) -> more: runs the module's loop for `timeout` seconds (default 0),
-- then what is ready, and returns; ws.pollfd() -> a descriptor readable whenever there is
-- work; ws.timeout() -> seconds until the module's next timer, or nil; ws.spawn(f, ...)
-- runs f as a coroutine of the module's loop, where ws.connect, recv and ws.sleep wait
-- without blocking the host.
if not evl then
	ws.step = core.step
	ws.pollfd = core.pollfd
	ws.timeout = core.timeout
	ws.spawn = core.spawn
	ws.hosts = assert((loadstring or load)(core.hosts_source, "@service_utils/WS/hosts.lua"))(ws)
end

-- Under evluaserver a dispatch runs on one of its worker threads and must return: what
-- would wait there or run a loop of its own is refused, never half-done.
if evl then
	local function not_under_evluaserver(name, why)
		return function()
			error(("%s is not supported under evluaserver (%s)"):format(name, why), 2)
		end
	end
	ws.sleep = not_under_evluaserver("ws.sleep", "it would hold one of evluaserver's worker threads")
	ws.server = not_under_evluaserver("ws.server", "evluaserver is the server: route a path to a handler module")
	for _, name in ipairs({ "step", "pollfd", "timeout", "spawn" }) do
		ws[name] = not_under_evluaserver("ws." .. name, "evluaserver runs the event loop")
	end
end

-- ws.open_connections() -> how many WebSocket connections (served and opened) the module
-- holds: in this Lua state (standalone), or in the process (evluaserver runtime, where
-- they live in the .so, shared by every Lua state).
ws.open_connections = evl and core.links.count or core.open_connections

-- ws.handle_msg(request, response): evluaserver calls this for each arriving frame.
-- The standalone server reads frames and calls handlers itself.
if evl then
	ws.handle_msg = evl.handle_msg
else
	function ws.handle_msg()
		error("ws.handle_msg is called by evluaserver for each frame; the standalone server (ws.server) dispatches frames to handlers itself", 2)
	end
end

-- What service_utils.WS.ws_util works through: how a table like {_ss = msg._ss} names a
-- connection, and the pools (process-wide under evluaserver; the Lua state's here).
if evl then
	ws._runtime = evl
else
	local pools = {}
	ws._runtime = {
		connection_of = function(conn, fname)
			if type(conn) == "table" then
				conn = conn._ss or conn.ss
			end
			if conn == nil then
				error("ws_util." .. fname .. ": conn must be a connection or a table with _ss", 3)
			end
			return conn
		end,
		pool_add = function(name, conn)
			local pool = pools[name] or { at = 0 }
			pools[name] = pool
			pool[#pool + 1] = conn
		end,
		-- the next connection in turn, left in the pool
		pool_next = function(name)
			local pool = pools[name]
			if pool == nil or #pool == 0 then
				return nil
			end
			pool.at = pool.at % #pool + 1
			return pool[pool.at]
		end,
		pool_forget = function(name, conn)
			local pool = pools[name]
			for i = #pool, 1, -1 do
				if pool[i] == conn then
					table.remove(pool, i)
					if pool.at >= i then
						pool.at = pool.at - 1
					end
				end
			end
		end,
	}
end

return ws
