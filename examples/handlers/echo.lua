-- /echo: sends every message back, text as text and binary as binary.
local ws_const = require("service_utils.WS.ws_const")

local echo = {}

-- The options tables of send, made once rather than per message.
local AS_TEXT, AS_BINARY = { msg_type = "TEXT" }, { msg_type = "BINARY" }

function echo.handle_message(msg)
	msg.conn:send(msg.data, msg.op_code == ws_const.FRAME_OP_BINARY and AS_BINARY or AS_TEXT)
end

return echo
