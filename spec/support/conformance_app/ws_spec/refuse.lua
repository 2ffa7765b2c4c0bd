-- /ws_spec/refuse: init refuses the handshake.
local refuse = {}
function refuse.init()
	return false, "refused by init"
end
function refuse.handle_message() end
return refuse
