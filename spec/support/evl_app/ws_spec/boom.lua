-- /ws_spec/boom: handle_message raises; handle_close still runs (and logs).
local boom = {}
function boom.handle_message()
	error("boom from the handler")
end
function boom.handle_close(msg)
	local f = io.open(os.getenv("WS_TEST_LOG") or "/dev/null", "a")
	if f then
		f:write("boom close ", tostring(msg.code), "\n")
		f:close()
	end
end
return boom
