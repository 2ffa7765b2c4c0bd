---@meta service_utils.WS.web_socket
-- LuaCATS annotations for lua-language-server: the whole public API of
-- service_utils.WS.web_socket (the module is a Rust .so; this file is never loaded).
-- Add this `types` folder to `Lua.workspace.library`. Checked against the module by
-- spec/types_spec.lua: every export annotated, nothing annotated that is not exported.

---@class ws
---@field WEBSOCKET_GUID string the GUID accept keys are derived from (RFC 6455 §1.3)
---@field WEBSOCKET_VERSION string "13"
---@field _VERSION string this module's version ("0.2.0")
---@field hosts ws.hosts adapters that drive the module from a host's loop (docs/hosts.md)
local ws = {}

---@alias ws.msg_type "TEXT"|"BINARY"

---@class ws.send_opts
---@field msg_type? ws.msg_type default "TEXT"
---@field compress? boolean false: this message goes uncompressed

---@class ws.compression
---@field server_max_window_bits? integer 8..15 (server default 12)
---@field client_max_window_bits? integer 8..15 (default 12)
---@field server_no_context_takeover? boolean
---@field client_no_context_takeover? boolean
---@field mem_level? integer 1..9 (default 5)
---@field level? integer 0..9 (default 6)
---@field threshold? integer bytes; smaller messages go uncompressed (default 1024)
---@field release_when_idle? boolean free zlib's state after each message (both *_no_context_takeover then agreed)

---@class ws.server_options
---@field host? string default "127.0.0.1"
---@field port? integer 0 picks a free port
---@field handler_base? string namespace of handler modules ("" allows any module)
---@field routes? table<string, string> exact path → handler module
---@field max_message_size? integer default 16 MiB
---@field max_frame_size? integer default max_message_size
---@field max_header_bytes? integer default 8192
---@field max_headers? integer default 64
---@field handshake_timeout? number seconds, default 10
---@field close_timeout? number seconds, default 5
---@field shutdown_timeout? number seconds, default 5
---@field send_buffer? integer bytes, default 1 MiB
---@field send_timeout? number seconds, default 30 (0: forever)
---@field max_connections? integer default 10000
---@field ping_interval? number seconds, default 30 (0: off)
---@field pong_timeout? number seconds, default 10
---@field idle_timeout? number seconds, default 0 (off)
---@field origins? string[] allowed Origin values
---@field tls? {cert: string, key: string, chain?: string}
---@field log? boolean|fun(level: string, message: string)
---@field log_level? "error"|"warn"|"info"|"debug"
---@field static? string directory answering plain GET/HEAD
---@field compression? boolean|ws.compression default on
---@field max_topics? integer default 64
---@field slow_subscriber? "drop"|"close" default "drop"
---@field pubsub? {redis?: string, redis_cluster?: string[], channel_prefix?: string, max_queued_bytes?: integer}
---@field workers? integer|"auto" default 1
---@field worker_init? string a module each worker requires at start

---@class ws.connect_inputs
---@field url string ws://, wss://, http://, https://
---@field hdrs table<string, string> extra request headers
---@field external boolean
---@field msg_handler? string module whose handle_* functions get the messages
---@field secure? boolean
---@field timeout? number seconds, default 40
---@field credentials? {username: string, password: string}
---@field ca_file? string
---@field verify? boolean default true
---@field max_message_size? integer
---@field ping_interval? number
---@field pong_timeout? number
---@field idle_timeout? number
---@field close_timeout? number
---@field send_buffer? integer
---@field send_timeout? number
---@field compression? boolean|ws.compression default on
---@field proxy? string|false "http://[user:pass@]host:port", "socks5://...", "socks5h://..."; default: the environment
---@field reconnect? boolean|{initial?: number, max?: number, factor?: number} with msg_handler: come back after drops

---@class ws.msg
---@field op_code integer
---@field flags integer
---@field payload_len integer
---@field buf string
---@field data string the payload (inflated if it came compressed)
---@field compressed boolean|nil it came compressed (permessage-deflate)
---@field conn ws.connection
---@field _ss ws.connection
---@field code? integer handle_close: the peer's close code
---@field reason? string handle_close / handle_timeout: the reason

---@class ws.connection
---@field id integer
---@field host string
---@field port integer
---@field path string
---@field query string|nil the request's query (server connections)
---@field handler string|nil
---@field msg_handler string|nil
---@field is_TLS boolean
---@field subprotocol string|nil
---@field ss ws.connection
---@field _ss ws.connection
---@field delays? number[] a reconnecting connection: the delays waited before reconnecting
---@field retrying? boolean a reconnecting connection: whether it is down and trying again (false once closed)
local connection = {}

---Sends a message; waits (suspending only the caller) while the queue is full.
---@param data string
---@param opts? ws.send_opts
---@return true|nil ok
---@return string? err
---@return string? kind
function connection:send(data, opts) end

---Sends without waiting: false when the queue is full (nothing queued).
---@param data string
---@param opts? ws.send_opts
---@return boolean|nil ok
---@return string? err
---@return string? kind
function connection:try_send(data, opts) end

---@param payload? string at most 125 bytes
---@return true|nil ok
---@return string? err
---@return string? kind
function connection:ping(payload) end

---@param code? integer default 1000
---@param reason? string
---@return true|nil ok
---@return string? err
---@return string? kind
function connection:close(code, reason) end

---@return boolean
function connection:is_open() end

---Client connections without a msg_handler: the next message.
---@param timeout? number seconds
---@return ws.msg|nil msg
---@return string? why "timeout" | "closed"
---@return integer? code
---@return string? reason
function connection:recv(timeout) end

---Server connections: messages published to `topic` come to this connection.
---@param topic string 1 to 256 bytes
---@return true|nil ok
---@return string? err
---@return string? kind
function connection:subscribe(topic) end

---@param topic string
---@return boolean was_subscribed
function connection:unsubscribe(topic) end

---@return string[]
function connection:topics() end

---@class ws.publish_opts
---@field msg_type? ws.msg_type
---@field exclude? ws.connection

---@class ws.server
---@field port integer
---@field host string
---@field is_TLS boolean
---@field worker integer this process's worker (1..workers)
---@field workers integer
local server = {}

---Serves until stopped; returns true.
---@param opts? {signals?: boolean}
---@return true
function server:run(opts) end

---@param timeout? number seconds to wait for closing handshakes
---@return true
function server:stop(timeout) end

---@return table counters (see the README)
function server:stats() end

---@param topic string
---@param data string
---@param opts? ws.publish_opts
---@return integer recipients in this worker
function server:publish(topic, data, opts) end

---@param options ws.server_options
---@return ws.server
function ws.server(options) end

---@param inputs ws.connect_inputs
---@return ws.connection|nil conn
---@return integer|string status_or_err
---@return table|string|nil headers_or_kind
function ws.connect(inputs) end

---The handshake entry point (evluaserver's controller calls it; the standalone server too).
---@param request any
---@param response any
---@param uc? table
---@return boolean ok
---@return string? handler_name
---@return table? handler
function ws.accept(request, response, uc) end

---evluaserver's entry point for each readable event of an upgraded socket.
---@param request? any
---@param response? any
function ws.handle_msg(request, response) end

---Suspends the calling handler (or runs the event loop from the main chunk).
---@param seconds number
function ws.sleep(seconds) end

---Publishes on every server of this Lua state (under evluaserver: of the process).
---@param topic string
---@param data string
---@param opts? ws.publish_opts
---@return integer recipients
function ws.publish(topic, data, opts) end

---@return integer the connections the module holds
function ws.open_connections() end

---Runs the module's loop for `timeout` seconds (default 0), then what is ready; returns
---whether work was left over (docs/hosts.md).
---@param timeout? number
---@return boolean more
function ws.step(timeout) end

---A descriptor readable whenever the module has work (Linux).
---@return integer fd
function ws.pollfd() end

---Seconds until the module's next timer, or nil without one.
---@return number?
function ws.timeout() end

---Runs `f(...)` as a coroutine of the module's loop (waiting calls suspend in it).
---@param f fun(...)
---@param ... any
function ws.spawn(f, ...) end

---@class ws.hosts
---@field luv fun(uv: table): {stop: fun()}
---@field cqueues fun(cq: table): {stop: fun()}
---@field copas fun(copas: table): {step: fun(max_wait?: number), loop: fun(until_fn?: fun(): boolean, max_wait?: number), stop: fun()}
---@field pollable fun(): table

return ws
