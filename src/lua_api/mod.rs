//! lua_api: what Lua sees of the module apart from the objects of each runtime — the
//! `core` table the embedded Lua files are built on (`web_socket.lua`, `platform.lua`),
//! the reading of option tables (`options`), and the `log` option (`log`). Both runtimes
//! answer Lua through these.
//!
//! Two pure values cross into Lua as opaque userdata (`create_any_userdata`): a
//! `deflate::Config` (`request.compression`, what `ws.accept` gets from the server) and a
//! `deflate::Agreement` (what a handshake agreed, handed to the runtime that opens the
//! connection).

pub mod answers;
pub mod connect_inputs;
pub mod log;
pub mod options;

use crate::evluaserver;
use crate::standalone::{
    client, frame_loop, host_loop, lua_connection, runtime, server, timers, topics,
};
use connect_inputs::{ConnectInputs, Runtime};
use mlua::{Lua, Table, Value};
use ws_proto::{deflate, handshake, routing};

/// The Rust functions the embedded Lua files are built on.
pub fn core_table(lua: &Lua) -> mlua::Result<Table> {
    let core = lua.create_table()?;
    add_runtime_entries(lua, &core)?;
    add_handshake(lua, &core)?;
    add_deflate(lua, &core)?;
    evluaserver::register(lua, &core)?;
    core.set("platform_source", include_str!("../../lua/platform.lua"))?;
    core.set("reconnect_source", include_str!("../../lua/reconnect.lua"))?;
    core.set("hosts_source", include_str!("../../lua/hosts.lua"))?;
    core.set("MSG_TYPE_REFUSED", answers::MSG_TYPE_REFUSED)?;
    core.set("RECV_WITH_HANDLER", answers::RECV_WITH_HANDLER)?;
    core.set("GUID", handshake::WEBSOCKET_GUID)?;
    core.set("VERSION", handshake::WEBSOCKET_VERSION)?;
    core.set("MODULE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(core)
}

/// The entry points that run on a runtime: servers, clients, log, sleep, publish, counts.
fn add_runtime_entries(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "server",
        lua.create_function(|lua, opts: Option<Table>| server::Server::bind(opts, lua))?,
    )?;
    core.set("connect", lua.create_async_function(client::connect)?)?;
    // connect_inputs(inputs) -> what the evluaserver glue needs of ws.connect's inputs,
    // read as the standalone runtime reads them; what it cannot honour raises
    core.set(
        "connect_inputs",
        lua.create_function(|lua, inputs: Table| {
            ConnectInputs::from_lua(&inputs, Runtime::Evluaserver)?.for_glue(lua)
        })?,
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
            runtime::wait("ws.sleep", timers::sleep(d)).await
        })?,
    )?;
    add_host_loop(lua, core)?;
    // publish(topic, data [, opts]) -> recipients: on every server of this Lua state
    core.set(
        "publish",
        lua.create_function(
            |_, (topic, data, opts): (mlua::String, mlua::String, Option<Table>)| {
                lua_connection::publish_from_lua(&topics::everywhere(), &topic, &data, opts)
            },
        )?,
    )?;
    core.set(
        "open_connections",
        lua.create_function(|_, ()| Ok(frame_loop::running()))?,
    )?;
    Ok(())
}

/// What a host's event loop drives the module with (`host_loop`), and `spawn`, which
/// runs Lua on the module's loop, where waiting calls suspend instead of blocking.
fn add_host_loop(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "step",
        lua.create_function(|_, wait: Option<f64>| {
            host_loop::step(match wait {
                Some(secs) => options::seconds_value("ws.step", "timeout", secs)?,
                None => std::time::Duration::ZERO,
            })
        })?,
    )?;
    core.set("pollfd", lua.create_function(|_, ()| host_loop::pollfd())?)?;
    core.set(
        "timeout",
        lua.create_function(|_, ()| Ok(host_loop::timeout()))?,
    )?;
    // spawn(f, ...): runs f(...) as a coroutine of the loop; an error it raises is logged
    core.set(
        "spawn",
        lua.create_function(|lua, (f, args): (mlua::Function, mlua::MultiValue)| {
            let thread = lua.create_thread(f)?;
            runtime::spawn(async move {
                if let Err(e) = thread.into_async::<()>(args).await {
                    eprintln!("service_utils.WS: error: ws.spawn: {e}");
                }
            });
            Ok(())
        })?,
    )?;
    Ok(())
}

/// The opening handshake's rules, for `ws.accept` and the glue's client.
fn add_handshake(lua: &Lua, core: &Table) -> mlua::Result<()> {
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
    // the answer to its Upgrade request (the original's messages; for a status other than
    // 101, the server's X-msg or the status, as the standalone client says).
    core.set(
        "check_response",
        lua.create_function(|_, (status, hdrs, key): (u16, Table, String)| {
            let headers = headers_of(&hdrs);
            let head = handshake::ResponseHead {
                status,
                reason: String::new(),
                headers,
            };
            Ok(if status != 101 {
                (None, Some(handshake::refusal(&head)))
            } else {
                match handshake::check_response(&head, &key) {
                    Ok(()) => (Some(true), None),
                    Err(m) => (None, Some(m.to_owned())),
                }
            })
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
    Ok(())
}

/// permessage-deflate: the server's answer, the client's offer and its check.
fn add_deflate(lua: &Lua, core: &Table) -> mlua::Result<()> {
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
                        (Some(answer), Some(lua.create_any_userdata(agreement)?))
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
                    Ok(Some(a)) => (Value::UserData(lua.create_any_userdata(a)?), None),
                    Ok(None) => (Value::Boolean(false), None),
                    Err(e) => (Value::Nil, Some(format!("connect: {e}"))),
                },
            )
        })?,
    )?;
    Ok(())
}

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
