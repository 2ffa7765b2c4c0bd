-- init refuses every connection with a message naming the peer.
local H = {}
function H.init(request, response, uc)
	return false, "go away, " .. uc.peer_host
end
function H.handle_message() end
return H
