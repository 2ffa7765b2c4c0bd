-- /ws_spec/boom: handle_message raises; handle_close still runs (and logs).
local log = require("ws_spec.log")
local boom = {}
function boom.handle_message()
	error("boom from the handler")
end
function boom.handle_close(msg)
	log("boom close", tostring(msg.code))
end
return boom
