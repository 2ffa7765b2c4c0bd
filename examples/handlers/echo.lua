-- /echo: sends every message back, text as text and binary as binary.
local ws_const = require("service_utils.WS.ws_const")

local echo = {}

function echo.handle_message(msg)
	local msg_type = msg.op_code == ws_const.FRAME_OP_BINARY and "BINARY" or "TEXT"
	msg.conn:send(msg.data, { msg_type = msg_type })
end

return echo
