-- init raises a Lua error.
local H = {}
function H.init()
	error("init exploded")
end
function H.handle_message() end
return H
