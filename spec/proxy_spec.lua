-- ws.connect through real proxies started here on free 127.0.0.1 ports and stopped by
-- their PIDs: Debian's tinyproxy (HTTP CONNECT, with and without Basic auth) and
-- dante-server (SOCKS5), to ws:// and wss:// targets; the environment's *_proxy and
-- no_proxy; a proxy that refuses and a proxy that is down.
local helper = require("spec.support.helper")

local missing
if not io.open("/usr/bin/tinyproxy") then
	missing = "tinyproxy is not installed (apt-get install tinyproxy)"
elseif not io.open("/usr/sbin/danted") then
	missing = "dante-server is not installed (apt-get install dante-server)"
end

local free_port = helper.free_port

local function write(path, text)
	local f = assert(io.open(path, "w"))
	f:write(text)
	f:close()
end

local function tinyproxy(auth)
	local port = free_port()
	local base = ("%s/tinyproxy-%d"):format(helper.ARTIFACTS, port)
	write(base .. ".log", "")
	os.execute("chmod 666 " .. base .. ".log")
	write(base .. ".conf", table.concat({
		"User nobody", "Group nogroup", "Port " .. port, "Listen 127.0.0.1", "Timeout 30",
		"Allow 127.0.0.1", "MaxClients 20", "LogLevel Connect", ('LogFile "%s.log"'):format(base),
		auth and "BasicAuth ada secret" or "",
	}, "\n") .. "\n")
	local p = helper.start_daemon("tinyproxy", ("tinyproxy -d -c %s.conf"):format(base), port, base .. ".out")
	p.log = base .. ".log"
	return p
end

-- `auth`: the username method (dante checks the system's accounts: the spec makes one).
local function dante(auth)
	local port = free_port()
	local base = ("%s/danted-%d"):format(helper.ARTIFACTS, port)
	write(base .. ".conf", table.concat({
		"logoutput: " .. base .. ".log", "internal: 127.0.0.1 port = " .. port, "external: 127.0.0.1",
		"clientmethod: none", "socksmethod: " .. (auth and "username" or "none"), "user.privileged: root",
		"user.unprivileged: nobody",
		"client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
		"socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }",
	}, "\n") .. "\n")
	local p = helper.start_daemon("danted", ("danted -f %s.conf -N 1"):format(base), port, base .. ".out")
	p.log = base .. ".log"
	return p
end

local function echo_through(url, inputs)
	local conn, why, kind = helper.connect(url, inputs)
	assert(conn, tostring(why) .. " (" .. tostring(kind) .. ")")
	assert(conn:send("through the proxy"))
	assert.are.equal("through the proxy", assert(conn:recv(5)).data)
	conn:close()
end

-- Whether the proxy's log mentions `port` (it carried a connection to it).
local function carried(proxy, port)
	return helper.eventually(function() return helper.read_file(proxy.log):find(tostring(port), 1, true) ~= nil end, 3)
end

describe("ws.connect through proxies", function()
	if missing then
		pending("skipped: " .. missing)
		return
	end
	local server, tls_server, cert
	setup(function()
		server = helper.start_server()
		local key
		cert, key = helper.certificate()
		tls_server = helper.start_server({ tls_cert = cert, tls_key = key })
	end)
	teardown(function() helper.stop_all() end)

	it("goes through an HTTP proxy with CONNECT to a ws:// target", function()
		local p = tinyproxy(false)
		echo_through(("ws://127.0.0.1:%d/echo"):format(server.port), { proxy = ("http://127.0.0.1:%d"):format(p.port) })
		assert.is_true(carried(p, server.port), helper.read_file(p.log))
		p.stop()
	end)

	it("does TLS end to end through the tunnel to a wss:// target, verifying the target", function()
		local p = tinyproxy(false)
		echo_through(("wss://localhost:%d/echo"):format(tls_server.port),
			{ proxy = ("http://127.0.0.1:%d"):format(p.port), ca_file = cert })
		assert.is_true(carried(p, tls_server.port))
		p.stop()
	end)

	it("sends Basic credentials, and says which hop refused without them", function()
		local p = tinyproxy(true)
		local url = ("ws://127.0.0.1:%d/echo"):format(server.port)
		local conn, why, kind = helper.connect(url, { proxy = ("http://127.0.0.1:%d"):format(p.port) })
		assert.is_nil(conn)
		assert.are.equal(("connect: proxy 127.0.0.1:%d refused CONNECT: 407 Proxy Authentication Required"):format(p.port), why)
		assert.are.equal("proxy", kind)
		echo_through(url, { proxy = ("http://ada:secret@127.0.0.1:%d"):format(p.port) })
		p.stop()
	end)

	it("goes through a SOCKS5 proxy, resolving locally (socks5) or at the proxy (socks5h)", function()
		local p = dante()
		echo_through(("ws://127.0.0.1:%d/echo"):format(server.port), { proxy = ("socks5://127.0.0.1:%d"):format(p.port) })
		echo_through(("wss://localhost:%d/echo"):format(tls_server.port),
			{ proxy = ("socks5h://127.0.0.1:%d"):format(p.port), ca_file = cert })
		assert.is_true(carried(p, tls_server.port), helper.read_file(p.log))
		p.stop()
	end)

	describe("with SOCKS5 user/password authentication", function()
		-- dante's username method checks the system's accounts: a throwaway one is made for
		-- this block (root only) and removed after it.
		local USER, PASSWORD = "wssockstest", "s0cks-spec-only"
		local made = false
		setup(function()
			made = helper.exec_ok("id -u | grep -qx 0")
				and helper.exec_ok(("id %s >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin %s"):format(USER, USER))
				and helper.exec_ok(("echo '%s:%s' | chpasswd"):format(USER, PASSWORD))
		end)
		teardown(function()
			if made then
				os.execute("userdel " .. USER .. " 2>/dev/null")
			end
		end)

		it("sends the user and password, and says when the proxy wants them or refuses them", function()
			if not made then
				pending("skipped: making the test account for dante's username method needs root")
				return
			end
			local p = dante(true)
			local url = ("ws://127.0.0.1:%d/echo"):format(server.port)
			echo_through(url, { proxy = ("socks5://%s:%s@127.0.0.1:%d"):format(USER, PASSWORD, p.port) })
			local conn, why, kind = helper.connect(url, { proxy = ("socks5://%s:wrong@127.0.0.1:%d"):format(USER, p.port) })
			assert.are.same({ nil, ("connect: SOCKS5 proxy 127.0.0.1:%d refused the user name and password"):format(p.port), "proxy" },
				{ conn, why, kind })
			conn, why = helper.connect(url, { proxy = ("socks5://127.0.0.1:%d"):format(p.port) })
			assert.is_nil(conn)
			assert.matches("accepts none of our authentication methods (it may want a user name and password)", why, 1, true)
			p.stop()
		end)
	end)

	it("says so when the proxy is down (kind refused)", function()
		local port = free_port()
		local conn, why, kind = helper.connect(("ws://127.0.0.1:%d/echo"):format(server.port),
			{ proxy = ("http://127.0.0.1:%d"):format(port) })
		assert.is_nil(conn)
		assert.matches(("^connect: cannot connect to proxy 127.0.0.1:%d: "):format(port), why)
		assert.are.equal("refused", kind)
	end)

	it("raises for a proxy URL it cannot use, naming the input", function()
		local ok, err = pcall(helper.connect, "ws://127.0.0.1:1/", { proxy = "ftp://p:1" })
		assert.is_false(ok)
		assert.matches("connect: inputs.proxy 'ftp://p:1' has scheme 'ftp'", tostring(err), 1, true)
	end)

	describe("from the environment", function()
		-- Runs ws.connect in a child Lua with `env` set; returns what it printed.
		local function connect_with_env(env, url)
			local script = os.tmpname()
			write(script, ("local c, why = require('service_utils.WS.web_socket').connect({url = %q, hdrs = {}, " ..
				"external = false, timeout = 5}) if c then c:send('hi') print(c:recv(5).data) else print(why) end"):format(url))
			local p = assert(io.popen(('env -u http_proxy -u https_proxy -u all_proxy -u no_proxy %s LUA_CPATH="%s/?.so;;" %s %s 2>&1')
				:format(env, helper.CPATH_ROOT, helper.LUA, script)))
			local out = p:read("*a")
			p:close()
			os.remove(script)
			return out
		end

		it("uses ws_proxy (http_proxy, all_proxy) and honours no_proxy", function()
			local p = tinyproxy(false)
			local url = ("ws://127.0.0.1:%d/echo"):format(server.port)
			assert.are.equal("hi\n", connect_with_env(("ws_proxy=http://127.0.0.1:%d"):format(p.port), url))
			assert.is_true(carried(p, server.port))
			local _, before = helper.read_file(p.log):gsub(":" .. server.port .. "%f[%D]", "")
			assert.are.equal("hi\n", connect_with_env(("http_proxy=http://127.0.0.1:%d no_proxy=127.0.0.1"):format(p.port), url))
			-- A later connection through the proxy, to another port, as a marker: once the proxy
			-- has logged it, it has logged whatever came before it.
			connect_with_env(("ws_proxy=http://127.0.0.1:%d"):format(p.port), ("ws://127.0.0.1:%d/echo"):format(tls_server.port))
			assert.is_true(carried(p, tls_server.port), "the marker went through the proxy")
			local _, after = helper.read_file(p.log):gsub(":" .. server.port .. "%f[%D]", "")
			assert.are.equal(before, after, "no_proxy: the proxy was not used")
			assert.matches("connect: cannot connect to proxy 127.0.0.1:1: ",
				connect_with_env("all_proxy=http://127.0.0.1:1", url), 1, true)
			p.stop()
		end)
	end)
end)
