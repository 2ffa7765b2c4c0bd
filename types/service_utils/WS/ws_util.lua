---@meta service_utils.WS.ws_util
-- LuaCATS annotations: service_utils.WS.ws_util, the original's function forms.

---@class ws_util
local ws_util = {}

---A connection object, or a table holding the socket in `_ss` or `ss` (`{_ss = msg._ss}`).
---@alias ws_util.conn ws.connection|{_ss: any}|{ss: any}

---A binary frame unless `msg_type = "TEXT"` (as in the original).
---@param conn ws_util.conn
---@param msg string
---@param opts? ws.send_opts
---@return true|nil ok
---@return string? err
---@return string? kind
function ws_util.send_msg(conn, msg, opts) end

---@param conn ws_util.conn
---@param timeout? number seconds
---@return ws.msg|nil msg
---@return string? why
---@return integer? code
---@return string? reason
function ws_util.recv_frame(conn, timeout) end

---@param conn ws_util.conn
---@param payload? string
---@return true|nil ok
---@return string? err
function ws_util.ping(conn, payload) end

---@param conn ws_util.conn
---@param code? integer
---@param reason? string
---@return true|nil ok
---@return string? err
function ws_util.close(conn, code, reason) end

---The original's low-level send: flags 0/BINARY, TEXT, PING or CLOSE.
---@param inp {ss?: any, conn?: ws_util.conn, flags?: integer, buf: string|any, size?: integer, use_mask?: boolean}
---@return table|nil inp
---@return string? err
---@return string? kind
function ws_util.send_frame(inp) end

---@param conn ws_util.conn
---@param name string
---@return true
function ws_util.add_ws_to_pool(conn, name) end

---An open connection of the pool, in turn (it stays pooled), or nil.
---@param name string
---@return ws.connection|nil
function ws_util.get_ws_from_pool(name) end

return ws_util
