-- Reports the handler calls it sees: pings and pongs are answered with text messages
-- ("ping:<data>", "pong:<data>"); closes and timeouts are recorded and "report" sends them
-- back; "stats" sends the server's counters.
local H = { closes = {} }
local closes = H.closes
function H.handle_ping(msg)
	assert(msg.op_code == 9 and msg.payload_len == #msg.data and msg.buf == msg.data)
	msg.conn:send("ping:" .. msg.data)
end
function H.handle_pong(msg)
	msg.conn:send("pong:" .. msg.data)
end
function H.handle_close(msg)
	closes[#closes + 1] = ("%d:%s"):format(msg.code, msg.reason)
end
function H.handle_timeout(msg)
	closes[#closes + 1] = "timeout:" .. msg.reason
end
function H.handle_message(msg)
	if msg.data == "report" then
		msg.conn:send(table.concat(closes, ","))
	elseif msg.data == "fields" then
		msg.conn:send(("%d %d %d %s %s"):format(msg.op_code, msg.flags, msg.payload_len, type(msg.buf), tostring(msg._ss == msg.conn)))
	elseif msg.data == "close" then
		msg.conn:close(4001, "bye")
	elseif msg.data == "stats" then
		local st = require("spec_server").server:stats()
		msg.conn:send(("open=%d accepted=%d rejected=%d r400=%d in=%d out=%d bytes_in=%d p1002=%d"):format(
			st.open_connections, st.handshakes_accepted, st.handshakes_rejected, st.rejected_by_reason["400"] or 0,
			st.messages_in, st.messages_out, st.bytes_in, st.protocol_error_closes[1002] or 0))
	elseif msg.data == "ws_util" then
		local ws_util = require("service_utils.WS.ws_util")
		assert(ws_util.send_msg({ _ss = msg._ss }, "via ws_util", { msg_type = "BINARY" }))
	end
end
return H
