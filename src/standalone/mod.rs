//! standalone: the runtime where this module owns the thread — a tokio current-thread
//! loop per Lua state (`runtime`), the server (`server`, `server_options`, `front`,
//! `static_files`, `overload`, `workers`, `stats`), the client (`client`, `proxy`), one
//! open connection (`connection` around a `ws_proto::engine::Engine`, written by
//! `transport` from the loop's `flusher` or a burst task, driven by `frame_loop`, delivering to Lua through `session`, seen from Lua as `lua_connection`, with an `inbox`
//! when it has no handler), the handshake's `request`/`response` objects (`http`), and
//! publish/subscribe (`topics`, across processes `pubsub`); the loop's timers (`timers`)
//! and its driving from a host's event loop (`host_loop`).

pub mod client;
pub mod connection;
pub mod flusher;
pub mod frame_loop;
pub mod front;
pub mod host_loop;
pub mod http;
pub mod inbox;
pub mod lua_connection;
pub mod overload;
pub mod proxy;
pub mod pubsub;
pub mod runtime;
pub mod server;
pub mod server_options;
pub mod session;
pub mod static_files;
pub mod stats;
pub mod timers;
pub mod tls;
pub mod topics;
pub mod transport;
pub mod workers;
