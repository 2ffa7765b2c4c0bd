-- Test server: `LUA spec/support/server.lua [key=value ...]`, run by helper.start_server.
-- Options are ws.server options (numbers converted); handler modules come from
-- spec/support/handlers (namespace "handlers"), examples/handlers, and
-- spec/support/conformance_app (namespace "ws_spec", reached with handler_base=).
-- Prints "listening on ws://HOST:PORT" once bound and serves until stopped.
package.path = "spec/support/?.lua;examples/?.lua;spec/support/conformance_app/?.lua;" .. package.path

local ws = require("service_utils.WS.web_socket")

-- key=value arguments; "origins" is a comma-separated list; "routes" a comma-separated
-- list of path@module; handler_base=none leaves it unset; tls_cert / tls_key make the
-- server a wss server; pubsub_redis=URL sets pubsub = {redis = URL} and
-- pubsub_max_queued_bytes=N its max_queued_bytes; pubsub_redis_cluster=URL,URL,... sets
-- pubsub = {redis_cluster = {URL, ...}}; compression_release_when_idle=true sets
-- compression = {release_when_idle = true}; signals=false is server:run's option.
local options = { handler_base = "handlers" }
local run_options = {}
for _, a in ipairs(arg) do
	local k, v = a:match("^([%w_]+)=(.*)$")
	assert(k, "bad argument " .. a)
	if k == "signals" then -- an option of server:run
		run_options.signals = v == "true"
	elseif k == "handler_base" and v == "none" then
		options.handler_base = nil
	elseif k == "routes" then
		options.routes = {}
		for path, module in v:gmatch("([^,@]+)@([^,]+)") do
			options.routes[path] = module
		end
	elseif k == "origins" then
		options.origins = {}
		for o in v:gmatch("[^,]+") do
			options.origins[#options.origins + 1] = o
		end
	elseif k == "pubsub_redis" or k == "pubsub_max_queued_bytes" then
		options.pubsub = options.pubsub or {}
		options.pubsub[k:sub(8)] = tonumber(v) or v
	elseif k == "pubsub_redis_cluster" then
		options.pubsub = options.pubsub or {}
		options.pubsub.redis_cluster = {}
		for url in v:gmatch("[^,]+") do
			table.insert(options.pubsub.redis_cluster, url)
		end
	elseif k == "compression_release_when_idle" then
		options.compression = { release_when_idle = v == "true" }
	elseif k == "tls_cert" or k == "tls_key" then
		options.tls = options.tls or {}
		options.tls[k:sub(5)] = v
	else
		options[k] = tonumber(v) or (v == "true" and true) or (v ~= "false" and v) or false
	end
end

local server = ws.server(options)
-- Lets handlers reach the server (handlers.control stops it).
package.loaded.spec_server = { server = server }
print(("listening on ws://%s:%d"):format(server.host, server.port))
io.stdout:flush()
server:run(run_options)
print("server stopped")
local events = package.loaded["handlers.events"]
if events then
	print(("handle_close calls: %d"):format(#events.closes))
end
io.stdout:flush()
