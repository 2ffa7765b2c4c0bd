-- A member of the topic "all" (benches/lua/idle_server.lua): it only listens.
local member = {}

function member.handle_open(conn)
	conn:subscribe("all")
end

function member.handle_message() end

return member
