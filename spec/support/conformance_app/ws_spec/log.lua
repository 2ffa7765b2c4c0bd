-- log(...): appends one line (the arguments joined by spaces) to the file named by
-- WS_TEST_LOG, where conformance_cases.py looks for what the handlers saw.
return function(...)
	local f = io.open(os.getenv("WS_TEST_LOG") or "/dev/null", "a")
	if f then
		f:write(table.concat({ ... }, " "), "\n")
		f:close()
	end
end
