//! `service_utils.WS.web_socket`: a WebSocket module for Lua, written in Rust.
//!
//! Layout, one concern per module:
//!
//! - `codec`: RFC 6455 frames ↔ bytes, masking, UTF-8, fragments, close codes, limits (pure)
//! - `deflate`: permessage-deflate (RFC 7692) — negotiation (pure), compressor and
//!   bomb-safe inflater made on first use
//! - `zlib`: a safe handle on one raw-deflate stream of the system zlib (memLevel, resets)
//! - `handshake`: Upgrade request parsing and judging, accept key, JSON errors (pure)
//! - `routing`: URL path → handler module name (pure)
//! - `options`: reading Lua option tables and seconds, with one error shape
//! - `runtime`: the tokio event loop of the Lua state (standalone mode)
//! - `http`: the `request` / `response` objects of the handshake
//! - `engine`: one connection between bytes and handler calls — state, close handshake,
//!   pong slot, deadlines from a `now`, outbound queue (pure; both runtimes drive it)
//! - `random`: masks and keys from getrandom(2)
//! - `transport`: the write side of a stream (plain or TLS), no SIGPIPE
//! - `connection`: the standalone runtime's connection around its engine: writer, direct
//!   writes, waits for room
//! - `inbox`: messages of a connection without a handler, waiting for `conn:recv()`
//! - `lua_connection`: the `ws_connection` userdata and the `msg` table
//! - `session`: the tokio driver of an engine (frame loop), shared by server and client
//! - `evl`: the evluaserver runtime — engines in a process-wide registry keyed by socket
//!   descriptor (`core.links`) for the Lua glue
//! - `static_files`: plain GET requests answered from a directory (the `static` option)
//! - `stats`: server counters (`server:stats()`)
//! - `pubsub`: topics across server processes through Redis (subscriber and publisher
//!   tasks, backoff, node ids)
//! - `topics`: publish/subscribe inside a server — subscriptions, one encoding shared by
//!   every recipient, slow subscribers
//! - `log`: the `log` / `log_level` options: stderr or a Lua function, from a level up
//! - `front`: the HTTP before a WebSocket, as I/O: reading heads (both sides), the
//!   server's verdict on a request before `ws.accept` (400 / 431 / 426 / static)
//! - `overload`: the descriptor limit — the effective connection cap, accept back-off,
//!   503 from a reserve descriptor
//! - `server_options`: `ws.server{...}`'s options, defaults, TLS acceptor, routes
//! - `server`: listener (plain or TLS), per-connection handshake, limits, graceful stop
//! - `workers`: `workers = N`: forked worker processes sharing the listener, and the mesh
//!   of Unix sockets between them (publishes, counters, stop)
//! - `url`: `ws://` / `wss://` URLs as `ws.connect` takes them (pure)
//! - `proxy`: `ws.connect` through HTTP CONNECT or SOCKS5 proxies, from the input or the
//!   environment (`*_proxy`, `no_proxy`)
//! - `client`: `ws.connect`: TCP (or a proxy's tunnel), TLS, handshake, then a session
//! - this file: the Lua entry points (`luaopen_*`) and the `core` table the Lua parts use
//!
//! The Lua parts (`lua/`) are embedded: `web_socket.lua` (`ws.accept` and the module
//! table), `platform.lua` (the evluaserver runtime, used when the `platform` global
//! exists), `ws_const.lua` and `ws_util.lua`. One `.so` is the whole module; it is
//! installed as `service_utils/WS/web_socket.so` with `ws_const.so` and `ws_util.so`
//! linking to it, each name finding its own `luaopen_` function.

pub mod client;
pub mod codec;
pub mod connection;
pub mod deflate;
pub mod engine;
pub mod evl;
pub mod front;
pub mod handshake;
pub mod http;
pub mod inbox;
pub mod log;
pub mod lua_connection;
pub mod options;
pub mod overload;
pub mod proxy;
pub mod pubsub;
pub mod random;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod server_options;
pub mod session;
pub mod static_files;
pub mod stats;
pub mod topics;
pub mod transport;
pub mod url;
pub mod workers;
pub mod zlib;

use mlua::{Function, Lua, Table, Value};

/// Runs one embedded Lua file with `core` as its argument and returns its table.
fn load_embedded(lua: &Lua, name: &str, source: &str, core: Table) -> mlua::Result<Table> {
    lua.load(source).set_name(format!("@{name}")).call(core)
}

/// The Rust functions the embedded Lua files are built on.
fn core_table(lua: &Lua) -> mlua::Result<Table> {
    let core = lua.create_table()?;
    core.set(
        "server",
        lua.create_function(|lua, opts: Option<Table>| server::Server::bind(opts, lua))?,
    )?;
    core.set("connect", lua.create_async_function(client::connect)?)?;
    core.set(
        "check_upgrade",
        lua.create_function(|_, (method, hdrs): (String, Table)| {
            let headers = headers_of(&hdrs);
            let lookup = |name: &str| handshake::header_value(&headers, name);
            let connection_upgrade = handshake::has_token(&headers, "Connection", "upgrade");
            Ok(
                match handshake::check_upgrade(&method, lookup, connection_upgrade) {
                    Ok(key) => (Some(key), None, false),
                    Err(r) => (None, Some(r.message), r.advertise_version),
                },
            )
        })?,
    )?;
    // check_response(status, hdrs, key) -> true | nil, message: a client's judgement of
    // the answer to its Upgrade request (the original's messages).
    core.set(
        "check_response",
        lua.create_function(|_, (status, hdrs, key): (u16, Table, String)| {
            let headers = headers_of(&hdrs);
            let head = handshake::ResponseHead {
                status,
                reason: String::new(),
                headers,
            };
            Ok(match handshake::check_response(&head, &key) {
                Ok(()) => (Some(true), None),
                Err(m) => (None, Some(m)),
            })
        })?,
    )?;
    // negotiate_deflate(offers, handler_choice, server_choice) -> answer, agreement | nil:
    // the server's permessage-deflate answer to the request's offers. The handler class's
    // `compression` wins over the server's; neither given: the defaults.
    core.set(
        "negotiate_deflate",
        lua.create_function(
            |lua, (offers, handler, server): (Option<String>, Value, Value)| {
                let d = deflate::Config::default();
                let chosen =
                    match options::compression(handler, "ws.accept", "handler.compression", d)? {
                        Some(choice) => choice,
                        None => options::compression_or(server, "ws.accept", "compression", d)?,
                    };
                let agreed = chosen
                    .zip(offers)
                    .and_then(|(cfg, offers)| deflate::negotiate(&offers, &cfg));
                Ok(match agreed {
                    Some((answer, agreement)) => {
                        (Some(answer), Some(lua.create_userdata(agreement)?))
                    }
                    None => (None, None),
                })
            },
        )?,
    )?;
    // deflate_offer(choice) -> offer | nil: a client's Sec-WebSocket-Extensions.
    core.set(
        "deflate_offer",
        lua.create_function(|_, choice: Value| {
            let cfg = options::client_compression(choice)?;
            Ok(cfg.map(|c| deflate::client_offer(&c)))
        })?,
    )?;
    // deflate_accept(answer, choice) -> agreement | false | nil, message: a client's
    // check of the server's Sec-WebSocket-Extensions (false: declined).
    core.set(
        "deflate_accept",
        lua.create_function(|lua, (answer, choice): (Option<String>, Value)| {
            let cfg = options::client_compression(choice)?;
            Ok(
                match deflate::client_accept(answer.as_deref(), cfg.as_ref()) {
                    Ok(Some(a)) => (Value::UserData(lua.create_userdata(a)?), None),
                    Ok(None) => (Value::Boolean(false), None),
                    Err(e) => (Value::Nil, Some(format!("connect: {e}"))),
                },
            )
        })?,
    )?;
    core.set(
        "accept_key",
        lua.create_function(|_, key: String| Ok(handshake::accept_key(&key)))?,
    )?;
    core.set(
        "handler_module",
        lua.create_function(|_, (uri, base): (String, Option<String>)| {
            Ok(
                match routing::handler_module(&uri, base.as_deref().unwrap_or("")) {
                    Ok(name) => (Some(name), None),
                    Err(e) => (None, Some(e)),
                },
            )
        })?,
    )?;
    core.set(
        "json_error",
        lua.create_function(|_, msg: String| Ok(handshake::json_error(&msg)))?,
    )?;
    core.set(
        "log",
        lua.create_function(|_, msg: String| {
            eprintln!("service_utils.WS: {msg}");
            Ok(())
        })?,
    )?;
    core.set(
        "sleep",
        lua.create_async_function(|_, secs: f64| async move {
            let d = duration(secs)?;
            // Timers must be created inside the runtime: build the sleep in the future.
            runtime::wait("ws.sleep", async move { tokio::time::sleep(d).await }).await
        })?,
    )?;
    // publish(topic, data [, opts]) -> recipients: on every server of this Lua state
    core.set(
        "publish",
        lua.create_function(
            |_, (topic, data, opts): (mlua::String, mlua::String, Option<Table>)| {
                topics::publish_from_lua(&topics::everywhere(), &topic, &data, opts)
            },
        )?,
    )?;
    core.set(
        "open_connections",
        lua.create_function(|_, ()| Ok(session::running()))?,
    )?;
    evl::register(lua, &core)?;
    core.set("platform_source", include_str!("../lua/platform.lua"))?;
    core.set("reconnect_source", include_str!("../lua/reconnect.lua"))?;
    core.set("GUID", handshake::WEBSOCKET_GUID)?;
    core.set("VERSION", handshake::WEBSOCKET_VERSION)?;
    core.set("MODULE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(core)
}

/// A `compression` configuration as `ws.accept` gets it from the server (`request.compression`).
impl mlua::UserData for deflate::Config {}
/// What a handshake agreed for permessage-deflate, handed from `ws.accept` (or the
/// client's check) to the runtime that opens the connection.
impl mlua::UserData for deflate::Agreement {}

/// The name/value pairs of a Lua table of headers (names in any case: evluaserver's
/// request objects keep the client's spelling), read in one pass.
fn headers_of(hdrs: &Table) -> Vec<(String, String)> {
    hdrs.pairs::<Value, Value>()
        .flatten()
        .filter_map(|(k, v)| {
            let Value::String(k) = k else { return None };
            let v = match v {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((k.to_string_lossy(), v))
        })
        .collect()
}

fn duration(secs: f64) -> mlua::Result<std::time::Duration> {
    options::seconds_value("ws.sleep", "seconds", secs)
}

/// `require('service_utils.WS.web_socket')`
#[mlua::lua_module(name = "service_utils_WS_web_socket", skip_memory_check)]
fn open_web_socket(lua: &Lua) -> mlua::Result<Table> {
    let ws = load_embedded(
        lua,
        "service_utils/WS/web_socket.lua",
        include_str!("../lua/web_socket.lua"),
        core_table(lua)?,
    )?;
    lua.set_named_registry_value(server::ACCEPT_KEY, ws.get::<Function>("accept")?)?;
    // One guard per Lua state: a second `require` (after `package.loaded[...] = nil`, as
    // test runners and reloaders do) must not replace it, or the old guard's finalizer,
    // whenever the GC gets to it, would drop the connections opened since.
    const LOOP_GUARD: &str = "service_utils.WS.loop_guard";
    if lua.named_registry_value::<Value>(LOOP_GUARD)?.is_nil() {
        lua.set_named_registry_value(LOOP_GUARD, runtime::LoopGuard)?;
    }
    Ok(ws)
}

/// `require('service_utils.WS.ws_const')`
#[mlua::lua_module(name = "service_utils_WS_ws_const", skip_memory_check)]
fn open_ws_const(lua: &Lua) -> mlua::Result<Table> {
    load_embedded(
        lua,
        "service_utils/WS/ws_const.lua",
        include_str!("../lua/ws_const.lua"),
        lua.create_table()?,
    )
}

/// `require('service_utils.WS.ws_util')`
#[mlua::lua_module(name = "service_utils_WS_ws_util", skip_memory_check)]
fn open_ws_util(lua: &Lua) -> mlua::Result<Table> {
    load_embedded(
        lua,
        "service_utils/WS/ws_util.lua",
        include_str!("../lua/ws_util.lua"),
        lua.create_table()?,
    )
}
