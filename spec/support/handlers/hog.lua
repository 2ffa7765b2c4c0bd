-- Takes the process's descriptors: "hog" opens /dev/null until no descriptor is left
-- (at most 100,000) and answers how many it holds; "free" closes them all.
local H = {}
local held = {}
function H.handle_message(msg)
	if msg.data == "hog" then
		for _ = 1, 100000 do
			local f = io.open("/dev/null")
			if not f then
				break
			end
			held[#held + 1] = f
		end
		msg.conn:send(tostring(#held))
	elseif msg.data == "free" then
		for i = #held, 1, -1 do
			held[i]:close()
			held[i] = nil
		end
		msg.conn:send("freed")
	end
end
return H
