//! bindings: the `core.links` table and the other `core` functions the Lua glue
//! (`lua/platform.lua`) drives the registry with — each call names a connection by its
//! socket descriptor and id, and gets plain Lua values back (events as tuples, send
//! results as `true | nil, message, kind`).

use super::buffers::ByteBuffer;
use super::registry::{
    self, count, open, remove, sent, settings, take_gone, take_output, upgrading, with, with_id,
    Link, LinkInfo, Refusal,
};
use crate::lua_api::{answers, options};
use mlua::{Lua, Table, UserDataRef, Value};
use std::time::Instant;
use ws_proto::codec::Role;
use ws_proto::deflate::Agreement;
use ws_proto::engine::{CloseError, Event, LocalClose, SendError};

/// `(kind, data, code, error_code)` of an event, for the glue: kind "text", "binary",
/// "ping", "pong", "timeout" (data: the reason) or "closed" (data: the reason, code: the
/// peer's close code or 1005/1006, error_code: the close code of our protocol-error
/// answer, if that is how it ended).
/// kind, data, code, error code, came compressed.
type LuaEvent = (
    Option<&'static str>,
    Option<mlua::String>,
    Option<u16>,
    Option<u16>,
    Option<bool>,
);

fn event_for_lua(lua: &Lua, event: Option<Event>) -> mlua::Result<LuaEvent> {
    let s = |b: &[u8]| lua.create_string(b).map(Some);
    Ok(match event {
        None => (None, None, None, None, None),
        Some(Event::Message {
            op,
            data,
            compressed,
        }) => (
            Some(if op == ws_proto::codec::opcode::TEXT {
                "text"
            } else {
                "binary"
            }),
            s(&data)?,
            None,
            None,
            Some(compressed),
        ),
        Some(Event::Ping(data)) => (Some("ping"), s(&data)?, None, None, None),
        Some(Event::Pong(data)) => (Some("pong"), s(&data)?, None, None, None),
        Some(Event::TimedOut(reason)) => (Some("timeout"), s(reason.as_bytes())?, None, None, None),
        Some(Event::Closed(e)) => (
            Some("closed"),
            s(e.reason.as_bytes())?,
            Some(e.code),
            e.error.map(|p| p.close_code),
            None,
        ),
    })
}

/// `f` on connection `id` at `fd`; `None` when it is not there (an id of `nil`: the glue's
/// object of a socket that is no open WebSocket).
fn with_link<R>(fd: i64, id: Option<u64>, f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    id.and_then(|id| with_id(fd, id, f))
}

/// What the glue knows of a connection: `{id=, role=, handler=, path=, host=, port=,
/// is_TLS=, subprotocol=}`.
fn info_table(lua: &Lua, id: u64, role: Role, info: LinkInfo) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.set("id", id)?;
    r.set(
        "role",
        if role == Role::Server {
            "server"
        } else {
            "client"
        },
    )?;
    r.set("handler", info.handler)?;
    r.set("path", info.path)?;
    r.set("query", info.query)?;
    r.set("host", info.host)?;
    r.set("port", info.port)?;
    r.set("is_TLS", info.is_tls)?;
    r.set("subprotocol", info.subprotocol)?;
    Ok(r)
}

/// The `core.links` table of the glue.
pub fn lua_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    add_lifecycle(lua, &t)?;
    add_ending(lua, &t)?;
    add_input_output(lua, &t)?;
    add_sending(lua, &t)?;
    add_topics(lua, &t)?;
    Ok(t)
}

/// A connection's life: opened, looked up, upgraded.
fn add_lifecycle(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // open(fd, "server"|"client", {handler=, path=, host=, port=, is_TLS=, subprotocol=,
    //      max_message_size=}) -> id
    t.set(
        "open",
        lua.create_function(|_, (fd, role, f): (i64, String, Table)| {
            let role = match role.as_str() {
                "server" => Role::Server,
                "client" => Role::Client,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "links.open: role must be server or client, got {other}"
                    )))
                }
            };
            let info = LinkInfo {
                handler: f.get("handler")?,
                path: f.get::<Option<String>>("path")?.unwrap_or_default(),
                query: f.get("query")?,
                host: f.get::<Option<String>>("host")?.unwrap_or_default(),
                port: f.get::<Option<u16>>("port")?.unwrap_or_default(),
                is_tls: f.get::<Option<bool>>("is_TLS")?.unwrap_or(false),
                subprotocol: f.get("subprotocol")?,
            };
            let max: Option<usize> = f.get("max_message_size")?;
            let close_timeout = f
                .get::<Option<f64>>("close_timeout")?
                .map(|s| options::seconds_value("links.open", "close_timeout", s))
                .transpose()?;
            let deflate = f
                .get::<Option<UserDataRef<Agreement>>>("deflate")?
                .map(|a| *a);
            let settings = settings(max, close_timeout);
            Ok(open(fd, role, info, settings, deflate, Instant::now()))
        })?,
    )?;
    // info(fd) -> {id=, role=, handler=, path=, host=, port=, is_TLS=, subprotocol=,
    //   close_timeout = seconds} | nil
    t.set(
        "info",
        lua.create_function(|lua, fd: i64| {
            let Some((id, role, info, close_timeout)) = with(fd, |l| {
                let close_timeout = l.engine.settings().close_timeout;
                (l.id, l.engine.role(), l.info.clone(), close_timeout)
            }) else {
                return Ok(Value::Nil);
            };
            let t = info_table(lua, id, role, info)?;
            t.set("close_timeout", close_timeout.as_secs_f64())?;
            Ok(Value::Table(t))
        })?,
    )?;
    // is_open(fd, id) -> whether connection id is open (no close frame sent or received)
    t.set(
        "is_open",
        lua.create_function(|_, (fd, id): (i64, u64)| {
            Ok(with_id(fd, id, |l| l.engine.is_open()).unwrap_or(false))
        })?,
    )?;
    // upgraded(fd): evluaserver has dispatched the socket, so the 101 is out
    t.set(
        "upgraded",
        lua.create_function(|_, fd: i64| {
            registry::upgraded(fd);
            Ok(())
        })?,
    )?;
    // upgrading(fd) -> whether fd's 101 is not out yet (its output is held)
    t.set(
        "upgrading",
        lua.create_function(|_, fd: i64| Ok(upgrading(fd)))?,
    )?;
    Ok(())
}

/// The end of a connection: a failed transport, the ones that ended unseen, removal.
fn add_ending(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // gone() -> {{fd=, id=, role=, handler=, path=, host=, port=, is_TLS=, subprotocol=,
    //           code=, reason=}, ...} | nil: connections that ended unseen, for handle_close
    t.set(
        "gone",
        lua.create_function(|lua, ()| {
            let gone = take_gone(Instant::now());
            if gone.is_empty() {
                return Ok(None); // the usual case: no table made per dispatch
            }
            let list = lua.create_table_with_capacity(gone.len(), 0)?;
            for g in gone {
                let r = info_table(lua, g.id, g.role, g.info)?;
                r.set("fd", g.fd)?;
                r.set("code", g.ending.code)?;
                r.set("reason", g.ending.reason)?;
                list.push(r)?;
            }
            Ok(Some(list))
        })?,
    )?;
    // transport_closed(fd): a read or write failed; the connection ends (1006)
    t.set(
        "transport_closed",
        lua.create_function(|_, fd: i64| {
            with(fd, |l| l.engine.transport_closed());
            Ok(())
        })?,
    )?;
    // remove(fd, id): the connection's end has been handled
    t.set(
        "remove",
        lua.create_function(|_, (fd, id): (i64, u64)| Ok(remove(fd, id)))?,
    )?;
    t.set("count", lua.create_function(|_, ()| Ok(count()))?)?;
    Ok(())
}

/// Bytes in (read sizes, feeding, events out) and queued output to send.
fn add_input_output(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // read_size(fd) -> bytes to ask the socket for: what the frame in progress still
    // needs, at least 16 KiB, at most 256 KiB per read.
    t.set(
        "read_size",
        lua.create_function(|_, fd: i64| {
            Ok(with(fd, |l| {
                l.engine
                    .bytes_wanted()
                    .saturating_sub(l.input.len())
                    .clamp(16 << 10, 256 << 10)
            })
            .unwrap_or(16 << 10))
        })?,
    )?;
    // feed(fd, bytes): bytes that arrived on the socket
    t.set(
        "feed",
        lua.create_function(|_, (fd, data): (i64, mlua::String)| {
            with(fd, |l| l.input.extend_from_slice(&data.as_bytes()));
            Ok(())
        })?,
    )?;
    // next(fd) -> kind, data, code, error_code | nil: the next event (deadlines are
    // checked first: under evluaserver they can only be acted on when the socket is served)
    t.set(
        "next",
        lua.create_function(|lua, fd: i64| {
            let now = Instant::now();
            let event = with(fd, |l| {
                l.engine.handle_timeout(now);
                l.engine.poll_event(&mut l.input, || now)
            })
            .flatten();
            event_for_lua(lua, event)
        })?,
    )?;
    // take_output(fd) -> bytes to send (then sent(fd, ok) must follow) | nil
    t.set(
        "take_output",
        lua.create_function(|lua, fd: i64| {
            take_output(fd).map(|b| lua.create_string(&b)).transpose()
        })?,
    )?;
    t.set(
        "sent",
        lua.create_function(|_, (fd, ok): (i64, bool)| {
            sent(fd, ok);
            Ok(())
        })?,
    )?;
    Ok(())
}

/// What the glue sends on a connection: messages, pings, closes.
fn add_sending(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // In these, `id` may be nil (a socket that is no open WebSocket): the answers are those
    // of a closed connection.
    // send(fd, id, opcode, data, compress) -> true | nil, message, kind (compress: unless
    // false, compressed when permessage-deflate was agreed and the message is not small)
    t.set(
        "send",
        lua.create_function(
            |_, (fd, id, op, data, compress): (i64, Option<u64>, u8, mlua::String, Option<bool>)| {
                let r = with_link(fd, id, |l| {
                    let compress = compress != Some(false);
                    l.engine.send(op, &data.as_bytes(), compress, Instant::now)
                });
                answers::sent("send", r.unwrap_or(Err(SendError::Closed)))
            },
        )?,
    )?;
    // ping(fd, id, payload) -> true | nil, message, kind (raises over 125 bytes)
    t.set(
        "ping",
        lua.create_function(|_, (fd, id, payload): (i64, Option<u64>, mlua::String)| {
            let r = with_link(fd, id, |l| l.engine.ping(&payload.as_bytes()));
            answers::sent("ping", r.unwrap_or(Err(SendError::Closed)))
        })?,
    )?;
    // close(fd, id, code, reason) -> true | nil, message, kind (raises
    // for a code that may not be sent or a reason over 123 bytes)
    t.set(
        "close",
        lua.create_function(
            |_, (fd, id, code, reason): (i64, Option<u64>, u16, String)| {
                let r = with_link(fd, id, |l| l.engine.close(code, &reason, Instant::now()));
                answers::closed(r.unwrap_or(Err(CloseError::AlreadyClosing)))
            },
        )?,
    )?;
    // handler_failed(fd, id): a handler raised (or could not be loaded): close with 1011
    t.set(
        "handler_failed",
        lua.create_function(|_, (fd, id): (i64, u64)| {
            with_id(fd, id, |l| {
                l.engine.fail(LocalClose::HandlerError, Instant::now())
            });
            Ok(())
        })?,
    )?;
    Ok(())
}

/// Topics: subscriptions by (descriptor, id), and publishing.
fn add_topics(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // subscribe(fd, id, topic) -> true, first | nil, message, kind (first: the
    // connection's first topic, so the glue makes its socket findable by descriptor)
    t.set(
        "subscribe",
        lua.create_function(|_, (fd, id, topic): (i64, Option<u64>, mlua::String)| {
            let topic = topic.to_str()?;
            let subscribed = id.map_or(Err(Refusal::Closing), |id| {
                registry::subscribe(fd, id, &topic)
            });
            Ok(match subscribed {
                Ok(first) => (Some(true), Some(first), None, None),
                Err(Refusal::Closing) => {
                    let (_, message, kind) = answers::closing("subscribe");
                    (None, None, message, kind)
                }
                Err(Refusal::Rule(e)) => {
                    let (_, message, kind) = answers::subscribe_refused(e, &topic)?;
                    (None, None, message, kind)
                }
            })
        })?,
    )?;
    // unsubscribe(fd, id, topic) -> whether it was subscribed
    t.set(
        "unsubscribe",
        lua.create_function(|_, (fd, id, topic): (i64, u64, mlua::String)| {
            Ok(registry::unsubscribe(fd, id, &topic.to_str()?))
        })?,
    )?;
    // topics(fd, id) -> the connection's topics
    t.set(
        "topics",
        lua.create_function(|_, (fd, id): (i64, u64)| Ok(registry::topics_of(fd, id)))?,
    )?;
    // publish(topic, data, msg_type, exclude_fd, exclude_id) -> {fd, id, fd, id, ...}: the
    // subscribers it was queued for (encoded once); the glue then sends each one's output.
    t.set(
        "publish",
        lua.create_function(
            |_,
             (topic, data, msg_type, ex_fd, ex_id): (
                mlua::String,
                mlua::String,
                Option<String>,
                Option<i64>,
                Option<u64>,
            )| {
                let topic = topic.to_str()?;
                let data = data.as_bytes();
                let op = answers::publish_opcode(&topic, msg_type.as_deref(), &data)?;
                let reached = registry::publish(&topic, op, &data, ex_fd.zip(ex_id));
                Ok(reached
                    .into_iter()
                    .flat_map(|(fd, id)| [fd, id as i64])
                    .collect::<Vec<i64>>())
            },
        )?,
    )?;
    // publish_stats() -> published, dropped (process-wide)
    t.set(
        "publish_stats",
        lua.create_function(|_, ()| Ok(registry::publish_stats()))?,
    )?;
    Ok(())
}

/// Adds what the glue needs to `core`: `links` (the registry), `buffer(n)`,
/// `client_key()` and `parse_url(url)`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set("links", lua_table(lua)?)?;
    core.set(
        "buffer",
        lua.create_function(|_, n: usize| Ok(ByteBuffer(vec![0; n])))?,
    )?;
    // basic_authorization(user, password) -> the Authorization value of inputs.credentials
    core.set(
        "basic_authorization",
        lua.create_function(|_, (user, password): (String, String)| {
            Ok(ws_proto::handshake::basic_authorization(&user, &password))
        })?,
    )?;
    // client_key() -> a fresh Sec-WebSocket-Key
    core.set(
        "client_key",
        lua.create_function(|_, ()| {
            let mut r = [0u8; 16];
            ws_proto::random::fill(&mut r);
            Ok(ws_proto::handshake::client_key(r))
        })?,
    )?;
    // parse_url(url) -> {secure=, host=, port=, target=} | error
    core.set(
        "parse_url",
        lua.create_function(|lua, url: String| {
            let u = ws_proto::url::parse_url(&url).map_err(mlua::Error::runtime)?;
            let t = lua.create_table()?;
            t.set("secure", u.secure)?;
            t.set("host", u.host)?;
            t.set("port", u.port)?;
            t.set("target", u.target)?;
            Ok(t)
        })?,
    )?;
    Ok(())
}
