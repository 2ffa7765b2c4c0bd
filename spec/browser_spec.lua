-- A real browser as the client: headless Chromium runs the chat page the example server
-- serves (examples/public) over ws:// and over wss://, two pages talking through /chat.
-- Screenshots go to spec/artifacts/browser-*.png.
local helper = require("spec.support.helper")

local missing
if not io.open("/usr/bin/chromium") then
	missing = "Chromium is not installed (apt-get install chromium)"
elseif not io.open("build/node/node_modules/playwright-core/package.json") then
	missing = "playwright-core is not installed (npm install --prefix build/node playwright-core)"
end

local function drive(url, shots, insecure)
	helper.all_ok(helper.lines_of(("NODE_PATH=build/node/node_modules timeout 90 node spec/support/browser_chat.js %s %s %s"):format(
		url, shots, insecure and "ignore-certificate-errors" or "")), 6)
end

describe("the chat example in headless Chromium", function()
	if missing then
		pending("skipped: " .. missing)
		return
	end
	after_each(helper.stop_all)

	it("serves the page and lets two pages chat over ws://", function()
		local server = helper.start_server({ static = "examples/public" })
		drive(("http://127.0.0.1:%d/"):format(server.port), helper.ARTIFACTS .. "/browser-ws")
		server.stop()
	end)

	it("does the same over wss:// with a certificate made for the test run", function()
		local cert, key = helper.certificate()
		local server = helper.start_server({ static = "examples/public", tls_cert = cert, tls_key = key })
		drive(("https://127.0.0.1:%d/"):format(server.port), helper.ARTIFACTS .. "/browser-wss", true)
		server.stop()
	end)
end)
