-- /ws_plain/boom: handle_message raises, and the class has no other hook.
return { handle_message = require("ws_spec.boom").handle_message }
