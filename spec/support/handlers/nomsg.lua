-- A handler class without handle_message.
return { init = function() return true end }
