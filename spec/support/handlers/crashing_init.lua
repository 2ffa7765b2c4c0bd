-- The workers spec's crash-loop worker_init: a worker started while the file named by
-- WS_CRASH_IF exists exits at once with status 3.
local marker = os.getenv("WS_CRASH_IF")
local exists = marker and io.open(marker)
if exists then
	exists:close()
	os.exit(3)
end
return { ran = true }
