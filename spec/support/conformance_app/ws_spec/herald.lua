-- /ws_spec/herald?room=NAME: announces each newcomer to the room from handle_open, from
-- inside the upgrade. Standalone that works; under evluaserver ws.publish refuses it (the
-- real evluaserver aborted after such publishes): the stand-in spec checks the refusal.
local ws = require("service_utils.WS.web_socket")

local herald = {}

local function topic_of(conn)
	return "herald:" .. ((conn.query or ""):match("room=([%w_%-]+)") or "lobby")
end

function herald.handle_open(conn)
	assert(conn:subscribe(topic_of(conn)))
	ws.publish(topic_of(conn), "joined", { exclude = conn })
end

function herald.handle_message(msg)
	ws.publish(topic_of(msg.conn), msg.data)
end

return herald
