//! ws-proto: the pure parts of `service_utils.WS.web_socket` — what a WebSocket is, with no
//! I/O runtime and no Lua (Cargo keeps it so: neither tokio nor mlua is a dependency).
//! Both runtimes of the Lua module (tokio standalone, evluaserver) drive these.
//!
//! - `codec`: RFC 6455 frames ↔ bytes, masking, UTF-8, fragments, close codes, limits
//! - `deflate`: permessage-deflate (RFC 7692) — negotiation, compressor and bomb-safe
//!   inflater made on first use
//! - `zlib`: a safe handle on one raw-deflate stream of the system zlib
//! - `engine`: one connection between bytes and handler calls — state, close handshake,
//!   the closes we decide (`LocalClose`), pong slot, deadlines from a `now`, outbound queue
//! - `handshake`: the opening HTTP exchange (§4): parsing, judging, accept key, JSON errors
//! - `routing`: URL path → handler module name (a security boundary)
//! - `url`: `ws://` / `wss://` URLs as `ws.connect` takes them
//! - `random`: masks and keys from getrandom(2)
//! - `subscriptions`: who subscribes to which topic, and the check of a publish
//! - `relay`: what a node owes Redis — messages bounded in bytes, the wanted channel set

pub mod codec;
pub mod deflate;
pub mod engine;
pub mod handshake;
pub mod random;
pub mod relay;
pub mod routing;
pub mod subscriptions;
pub mod url;
pub mod zlib;
