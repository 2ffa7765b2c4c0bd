-- permessage-deflate (RFC 7692) on the wire: what the server answers to offers, what it
-- sends compressed and what it refuses, checked from raw bytes.
local helper = require("spec.support.helper")

local EXT = "sec-websocket-extensions"
local RSV1 = 0x40
-- RFC 7692 §7.2.3.1: "Hello" compressed, the tail removed.
local HELLO = "\242\72\205\201\201\7\0"

local function deflate_open(port, path, offer)
	return helper.open(port, path, { ["Sec-WebSocket-Extensions"] = offer })
end

local function send_text(sock, text, opts)
	assert(sock:send(helper.frame(helper.OP.TEXT, text, opts)))
end

-- Text that deflates only by repeating: words picked by a fixed pseudo-random sequence.
local function word_salad(n)
	local words, out, x = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
		"juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo" }, {}, 12345
	local len = 0
	while len < n do
		x = (x * 1103515245 + 12345) % 2147483648
		local w = words[x % #words + 1] .. (x % 7)
		out[#out + 1], len = w, len + #w + 1
	end
	return table.concat(out, " "):sub(1, n)
end

-- A payload that deflates well: repeated JSON.
local function json_text(n)
	local row = '{"user":"ada","room":"lobby","text":"hello, hello"},'
	return ("["):rep(1) .. row:rep(math.ceil(n / #row)):sub(1, n - 1) .. "]"
end

describe("permessage-deflate", function()
	local server
	setup(function() server = helper.start_server({ max_message_size = 1048576, max_frame_size = 4194304 }) end)
	teardown(function() server.stop(); helper.stop_all() end)

	describe("negotiation", function()
		it("answers a browser's offer with the server's 4 KiB window and limits the client's", function()
			local sock, res = deflate_open(server.port, "/echo", "permessage-deflate; client_max_window_bits")
			assert.are.equal("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", res.headers[EXT])
			sock:close()
		end)

		it("echoes the context-takeover flags and smaller windows a client asks for", function()
			local sock, res = deflate_open(server.port, "/echo",
				"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9")
			assert.are.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
				"server_max_window_bits=10; client_max_window_bits=9", res.headers[EXT])
			sock:close()
		end)

		it("skips a malformed or unknown offer for the next acceptable one", function()
			local sock, res = deflate_open(server.port, "/echo",
				"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, " ..
				"permessage-deflate; client_no_context_takeover; client_no_context_takeover, permessage-deflate; mystery, " ..
				"permessage-deflate; server_max_window_bits=\"11\"")
			assert.are.equal("permessage-deflate; server_max_window_bits=11", res.headers[EXT])
			sock:close()
		end)

		-- 4000 bytes of JSON to /echo on `sock` come back as sent, without RSV1.
		local function echoes_uncompressed(sock)
			local text = json_text(4000)
			send_text(sock, text)
			local f = helper.read_frame(sock)
			assert.are.same({ 0, text }, { f.rsv, f.payload })
			sock:close()
		end

		it("declines offers it cannot accept and the connection goes on uncompressed", function()
			local sock, res = deflate_open(server.port, "/echo", "permessage-deflate; server_max_window_bits=99")
			assert.is_nil(res.headers[EXT])
			echoes_uncompressed(sock)
		end)

		it("agrees to a window of 8 bits and then sends uncompressed (zlib cannot compress with it)", function()
			local sock, res = deflate_open(server.port, "/echo", "permessage-deflate; server_max_window_bits=8")
			assert.are.equal("permessage-deflate; server_max_window_bits=8", res.headers[EXT])
			echoes_uncompressed(sock)
		end)

		it("is off for a handler class with compression = false", function()
			local sock, res = deflate_open(server.port, "/uncompressed", "permessage-deflate")
			assert.is_nil(res.headers[EXT])
			sock:close()
		end)

		it("refuses options out of range, naming them", function()
			local ws = require("service_utils.WS.web_socket")
			for option, message in pairs({
				mem_level = "ws.server: compression.mem_level must be a whole number from 1 to 9, got 10",
				server_max_window_bits = "ws.server: compression.server_max_window_bits must be a whole number from 8 to 15, got 16",
			}) do
				local ok, err = pcall(ws.server, { handler_base = "", compression = { [option] = option == "mem_level" and 10 or 16 } })
				assert.is_false(ok)
				assert.matches(message, tostring(err), 1, true)
			end
			local ok, err = pcall(ws.server, { handler_base = "", compression = "yes" })
			assert.is_false(ok)
			assert.matches("ws.server: compression must be false, true or a table, got 'yes'", tostring(err), 1, true)
		end)

		it("with release_when_idle, agrees no context takeover both ways and refuses a takeover it cannot keep", function()
			local releasing = helper.start_server({ compression_release_when_idle = true })
			local sock, res = deflate_open(releasing.port, "/echo", "permessage-deflate; client_max_window_bits")
			assert.are.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
				"server_max_window_bits=12; client_max_window_bits=12", res.headers[EXT])
			sock:close()
			releasing.stop()
			local ws = require("service_utils.WS.web_socket")
			local ok, err = pcall(ws.server, { handler_base = "",
				compression = { release_when_idle = true, client_no_context_takeover = false } })
			assert.is_false(ok)
			assert.matches("ws.server: compression.release_when_idle needs compression.client_no_context_takeover " ..
				"(leave it out or true)", tostring(err), 1, true)
		end)

		it("is off for a server with compression = false", function()
			local plain = helper.start_server({ compression = false })
			local sock, res = deflate_open(plain.port, "/echo", "permessage-deflate; client_max_window_bits")
			assert.is_nil(res.headers[EXT])
			sock:close()
			plain.stop()
		end)
	end)

	describe("messages", function()
		it("inflates RFC 7692's compressed 'Hello' and tells the handler it came compressed", function()
			local sock = deflate_open(server.port, "/deflate_probe", "permessage-deflate")
			send_text(sock, HELLO, { rsv = RSV1 })
			assert.are.equal("true 5", helper.read_frame(sock).payload)
			send_text(sock, "Hello")
			assert.are.equal("false 5", helper.read_frame(sock).payload)
			sock:close()
		end)

		it("inflates a compressed message sent in fragments (RSV1 on the first only)", function()
			local sock = deflate_open(server.port, "/deflate_probe", "permessage-deflate")
			send_text(sock, HELLO:sub(1, 3), { rsv = RSV1, fin = false })
			assert(sock:send(helper.frame(helper.OP.CONT, HELLO:sub(4))))
			assert.are.equal("true 5", helper.read_frame(sock).payload)
			sock:close()
		end)

		it("compresses messages from 1 KiB up, with RSV1 on the frame; smaller ones go plain", function()
			local sock = deflate_open(server.port, "/echo", "permessage-deflate")
			local text = json_text(4000)
			send_text(sock, text)
			local big = helper.read_frame(sock)
			assert.are.equal(RSV1, big.rsv)
			assert.is_true(#big.payload < #text / 10, "4000 bytes of JSON went out as " .. #big.payload)
			send_text(sock, "short")
			local small = helper.read_frame(sock)
			assert.are.same({ 0, "short" }, { small.rsv, small.payload })
			sock:close()
		end)

		it("sends uncompressed what a handler sends with {compress = false}", function()
			local sock = deflate_open(server.port, "/deflate_probe", "permessage-deflate")
			local text = json_text(4000)
			send_text(sock, "!plain " .. text)
			local f = helper.read_frame(sock)
			assert.are.same({ 0, text }, { f.rsv, f.payload })
			sock:close()
		end)

		it("keeps its context between messages unless server_no_context_takeover was agreed", function()
			local text = word_salad(3000)
			local sizes = {}
			for _, offer in ipairs({ "permessage-deflate", "permessage-deflate; server_no_context_takeover" }) do
				local sock = deflate_open(server.port, "/echo", offer)
				send_text(sock, text)
				local first = #helper.read_frame(sock).payload
				send_text(sock, text)
				sizes[offer] = { first, #helper.read_frame(sock).payload }
				sock:close()
			end
			local kept, reset = sizes["permessage-deflate"], sizes["permessage-deflate; server_no_context_takeover"]
			assert.is_true(kept[2] < kept[1] / 2, "the repeat refers to the first: " .. kept[1] .. " then " .. kept[2])
			assert.are.equal(reset[1], reset[2])
		end)
	end)

	describe("refusals", function()
		local function closes_with(offer, frames, code)
			local sock = offer and deflate_open(server.port, "/echo", offer) or helper.open(server.port, "/echo")
			for _, f in ipairs(frames) do
				assert(sock:send(f))
			end
			assert.are.equal(code, (helper.read_close(sock)))
			sock:close()
		end

		it("closes 1002 on RSV1 without the extension", function()
			closes_with(nil, { helper.frame(helper.OP.TEXT, HELLO, { rsv = RSV1 }) }, 1002)
		end)

		it("closes 1002 on RSV1 on a continuation frame", function()
			closes_with("permessage-deflate", {
				helper.frame(helper.OP.TEXT, "Hel", { fin = false }),
				helper.frame(helper.OP.CONT, "lo", { rsv = RSV1 }),
			}, 1002)
		end)

		it("closes 1002 on RSV1 on a control frame", function()
			closes_with("permessage-deflate", { helper.frame(helper.OP.PING, "", { rsv = RSV1 }) }, 1002)
		end)

		it("closes 1002 on RSV2 or RSV3 even with the extension", function()
			closes_with("permessage-deflate", { helper.frame(helper.OP.TEXT, "x", { rsv = 0x20 }) }, 1002)
		end)

		it("closes 1007 on data that is not deflate", function()
			closes_with("permessage-deflate", { helper.frame(helper.OP.TEXT, ("\255"):rep(64), { rsv = RSV1 }) }, 1007)
		end)

		it("closes 1007 on compressed text that inflates to invalid UTF-8", function()
			-- a stored (uncompressed) deflate block holding the byte 0xff
			closes_with("permessage-deflate", { helper.frame(helper.OP.TEXT, "\0\1\0\254\255\255", { rsv = RSV1 }) }, 1007)
		end)
	end)

	describe("a compression bomb", function()
		local bomb
		setup(function()
			local p = assert(io.popen(helper.PYTHON .. " spec/support/deflate_bomb.py 1073741824"))
			bomb = p:read("*a")
			p:close()
			assert(#bomb > 500000 and #bomb < 2000000, "bomb of " .. #bomb .. " bytes")
		end)

		it("of 1 GiB in one frame closes 1009 having inflated at most max_message_size", function()
			local sock = deflate_open(server.port, "/echo", "permessage-deflate")
			send_text(sock, bomb, { rsv = RSV1 })
			assert.are.equal(1009, (helper.read_close(sock)))
			sock:close()
			assert.is_true(helper.stat(server, "max_inflated") <= 1048576 + 1,
				"inflated " .. helper.stat(server, "max_inflated"))
			assert.is_true(helper.echoes(server.port))
		end)

		it("of 1 GiB in 1,000 small fragments closes 1009 the same way", function()
			local sock = deflate_open(server.port, "/echo", "permessage-deflate")
			local step = math.ceil(#bomb / 1000)
			local frames = {}
			for at = 1, #bomb, step do
				local first, last = at == 1, at + step > #bomb
				frames[#frames + 1] = helper.frame(first and helper.OP.BINARY or helper.OP.CONT, bomb:sub(at, at + step - 1),
					{ rsv = first and RSV1 or 0, fin = last })
			end
			sock:send(table.concat(frames))
			assert.are.equal(1009, (helper.read_close(sock)))
			sock:close()
			assert.is_true(helper.stat(server, "max_inflated") <= 1048576 + 1)
		end)
	end)
end)

describe("permessage-deflate with independent peers", function()
	local row = '{"user":"ada","room":"lobby","text":"hello, hello"},'
	local connect = helper.connect

	-- ws.connect to `url` (with `compression`): big JSON both ways must come back whole,
	-- compressed; what was asked for must have been agreed.
	local function compressed_echo(url, compression)
		local conn, status, headers = connect(url, { compression = compression })
		assert(conn, status)
		local agreed = headers["sec-websocket-extensions"]
		assert.matches("^permessage%-deflate", agreed)
		for k, v in pairs(compression or {}) do
			if k:match("^server_") then -- the server must agree to these in its answer (RFC 7692 §7.1)
				assert.matches(k .. (v == true and "" or "=" .. v), agreed)
			end
		end
		for _, n in ipairs({ 1, 40, 4000 }) do
			local text = row:rep(n)
			assert(conn:send(text))
			local msg = assert(conn:recv(10))
			assert.is_true(msg.data == text, "echo of " .. #text)
			if #text >= 1024 then -- every peer compresses these (some compress all)
				assert.is_true(msg.compressed, "msg.compressed for " .. #text)
			end
		end
		return conn
	end

	describe("as clients of this server", function()
		local server
		setup(function() server = helper.start_server() end)
		teardown(function() server.stop(); helper.stop_all() end)

		it("Python websockets: default offer, no context takeover, 9-bit windows", function()
			helper.all_ok(helper.python("deflate", server.port), 33)
		end)

		for _, variant in ipairs({ "default", "no-context-takeover", "9-bit-windows" }) do
			it("Node ws (perMessageDeflate: " .. variant .. ")", function()
				helper.all_ok(helper.lines_of(("NODE_PATH=build/node/node_modules timeout 60 node spec/support/node_client.js " ..
					"ws://127.0.0.1:%d/echo %s"):format(server.port, variant)), 9)
			end)
		end

		it("this module's own client", function()
			compressed_echo(("ws://127.0.0.1:%d/echo"):format(server.port)):close()
		end)

		it("this module's own client, to a server that frees its zlib state between messages (release_when_idle)", function()
			local releasing = helper.start_server({ compression_release_when_idle = true })
			local conn = compressed_echo(("ws://127.0.0.1:%d/echo"):format(releasing.port))
			compressed_echo(("ws://127.0.0.1:%d/echo"):format(releasing.port)):close()
			conn:close()
			releasing.stop()
		end)
	end)

	describe("ws.connect as the client", function()
		after_each(helper.stop_all)

		local variants = {
			{ "the default offer", nil },
			{ "no context takeover", { server_no_context_takeover = true, client_no_context_takeover = true } },
			{ "9-bit windows", { server_max_window_bits = 9, client_max_window_bits = 9 } },
		}
		for _, peer in ipairs({ { "Python websockets", helper.start_python, "echo" }, { "Node ws", helper.start_node, "deflate" } }) do
			for _, v in ipairs(variants) do
				it(("of %s, with %s"):format(peer[1], v[1]), function()
					local server = peer[2](peer[3])
					local conn = compressed_echo(("ws://127.0.0.1:%d/"):format(server.port), v[2])
					assert(conn:send("!big 100000"))
					local msg = assert(conn:recv(10))
					assert.are.same({ 100000, true }, { #msg.data, msg.compressed })
					conn:close()
					server.stop()
				end)
			end
		end

		it("offers nothing with compression = false, and gets plain messages", function()
			local peer = helper.start_python("echo")
			local conn, status, headers = connect(("ws://127.0.0.1:%d/"):format(peer.port), { compression = false })
			assert(conn, status)
			assert.is_nil(headers["sec-websocket-extensions"])
			assert(conn:send("!big 100000"))
			assert.is_false(assert(conn:recv(10)).compressed)
			conn:close()
			peer.stop()
		end)
	end)
end)
