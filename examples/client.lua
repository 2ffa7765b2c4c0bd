-- A command-line WebSocket client: sends each line of stdin as a message, prints every
-- message that arrives (text as it is, binary as its length), closes at the end of input.
--
--   lua5.4 examples/client.lua URL [--binary] [--header "Name: value"]... [--proxy URL] [--ca-file FILE]
--
--   echo hello | lua5.4 examples/client.lua ws://127.0.0.1:8080/echo      prints: hello
--
-- Messages that arrive while it waits for a line are printed when the line is sent (Lua
-- reads stdin blocking); at the end of input it waits a second for the last answers.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local ws = require("service_utils.WS.web_socket")

local function usage(why)
	io.stderr:write((why and why .. "\n" or "") ..
		'usage: lua5.4 examples/client.lua URL [--binary] [--header "Name: value"]... [--proxy URL] [--ca-file FILE]\n')
	os.exit(2)
end

local url, binary, headers, proxy, ca_file = nil, false, {}, nil, nil
local i = 1
while i <= #arg do
	local a = arg[i]
	if a == "--binary" then
		binary = true
	elseif a == "--header" or a == "--proxy" or a == "--ca-file" then
		local v = arg[i + 1] or usage(a .. " needs a value")
		i = i + 1
		if a == "--header" then
			local name, value = v:match("^([^:]+):%s*(.*)$")
			if not name then
				usage("--header wants \"Name: value\", got " .. v)
			end
			headers[name] = value
		elseif a == "--proxy" then
			proxy = v
		else
			ca_file = v
		end
	elseif a:sub(1, 2) == "--" then
		usage("unknown option " .. a)
	elseif url == nil then
		url = a
	else
		usage("one URL only")
	end
	i = i + 1
end
if url == nil then
	usage()
end

-- Incoming messages go to this handler (a module of this script), printed as they come.
package.loaded["examples.client_printer"] = {
	handle_message = function(msg)
		if msg.op_code == 2 then
			print(("<binary message of %d bytes>"):format(#msg.data))
		else
			print(msg.data)
		end
		io.stdout:flush()
	end,
	handle_close = function(msg)
		if msg.code ~= 1000 and msg.code ~= 1005 then
			io.stderr:write(("closed: %d %s\n"):format(msg.code, msg.reason or ""))
		end
	end,
}

local conn, err, kind = ws.connect({
	url = url, hdrs = headers, external = true, timeout = 10,
	msg_handler = "examples.client_printer", proxy = proxy, ca_file = ca_file,
})
if not conn then
	io.stderr:write(("%s (%s)\n"):format(err, kind))
	os.exit(1)
end
local opts = { msg_type = binary and "BINARY" or "TEXT" }
for line in io.lines() do
	local ok, why = conn:send(line, opts)
	if not ok then
		io.stderr:write(why .. "\n")
		os.exit(1)
	end
	ws.sleep(0.05) -- let what arrived meanwhile be printed
end
ws.sleep(1)
conn:close()
