-- init adds response headers from what it was given: a subprotocol, the peer address and
-- a request header read through uc.headers with another case than the client's, and the
-- Authorization header the client sent.
local H = {}
function H.init(request, response, uc)
	response:set_hdr_field("Sec-WebSocket-Protocol", "chat.v1")
	response:set_hdr_field("X-Uc-Peer", uc.peer)
	response:set_hdr_field("X-Uc-Agent", tostring(uc.headers["user-agent"]) .. "|" .. tostring(uc.headers["User-Agent"]))
	response:set_hdr_field("X-Req-Agent", tostring(request:get_hdr_field("USER-AGENT")))
	response:set_hdr_field("X-Uc-Query", tostring(uc.query))
	response:set_hdr_field("X-Uc-Authorization", tostring(uc.headers["authorization"]))
	return true
end
function H.handle_message(msg)
	msg.conn:send(msg.data)
end
return H
