//! lua_connection: the `ws_connection` object Lua holds in the standalone runtime
//! (`msg.conn`, what `ws.connect` returns) and the `msg` table handlers are given.
//!
//! Misuse raises (a bad `msg_type`, a ping over 125 bytes, a close code that may not be
//! sent); what the connection's state refuses is returned as `nil, message`.

use crate::lua_api::answers::{self, done, failed, Answer};
use crate::standalone::connection::Connection;
use crate::standalone::inbox::RecvEnd;
use crate::standalone::runtime;
use crate::standalone::topics::Topics;
use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    UserDataRef,
};
use std::rc::Rc;
use std::time::Duration;
use ws_proto::codec::{close_code, opcode, Role};
use ws_proto::engine::State;

fn seconds_arg(what: &str, s: Option<f64>) -> mlua::Result<Option<Duration>> {
    s.map(|s| crate::lua_api::options::seconds_value(what, "timeout", s))
        .transpose()
}

/// The Lua half of the connection object and of `msg` tables, compiled once per Lua state.
/// Building a `msg` with a table constructor in Lua costs a fifth of setting its seven
/// fields from Rust; `send` and `try_send` read `opts.msg_type` in Lua and call a
/// synchronous method, so a send that finds room never goes through an async callback.
const LUA_PARTS: &str = r#"
local MSG_TYPE_REFUSED = ...
local msg_of = function(op, data, conn, compressed)
	return { op_code = op, flags = 128 + op, payload_len = #data, buf = data, data = data, _ss = conn, conn = conn, compressed = compressed }
end
local OPCODE = { TEXT = 1, BINARY = 2 }
local function opcode(what, opts)
	local kind = opts and opts.msg_type
	if kind == nil then
		return 1
	end
	return OPCODE[kind] or error(MSG_TYPE_REFUSED:format(what, tostring(kind)), 3)
end
-- Each connection's queue(data, opcode, for_send, compress) function, by connection, made
-- at its first send (an idle connection has none): a closure over the connection, cheaper
-- to call than a method.
local queues = setmetatable({}, { __mode = "k" })
local function new_queue(conn)
	local queue = conn:_queue()
	queues[conn] = queue
	return queue
end
local wait_room -- the connection type's method, found on first use
local methods = {}
-- send(data [, {msg_type = "TEXT"|"BINARY", compress = false}]) -> true | nil, err, kind
function methods.send(conn, data, opts)
	local queue = queues[conn] or new_queue(conn)
	local ok, err, kind = queue(data, opcode("send", opts), true, not opts or opts.compress ~= false)
	if ok == false then
		wait_room = wait_room or conn._wait_room
		return wait_room(conn)
	end
	return ok, err, kind
end
-- try_send(data [, opts]) -> true | false (queue full: nothing queued) | nil, err, kind
function methods.try_send(conn, data, opts)
	local queue = queues[conn] or new_queue(conn)
	return queue(data, opcode("try_send", opts), false, not opts or opts.compress ~= false)
end
return {
	msg = msg_of,
	-- call(f, op, data, conn, compressed): f(msg) with a fresh msg, in the caller's coroutine
	call = function(f, op, data, conn, compressed) return f(msg_of(op, data, conn, compressed)) end,
	-- run(f, conn, next_msg): the body of a connection's message coroutine: handles the
	-- messages next_msg() gives (the one it was resumed for, then those already received
	-- after it) until it gives none, then yields, and again on the next resume.
	run = function(f, conn, next_msg)
		while true do
			local op, data, compressed = next_msg()
			while op do
				f(msg_of(op, data, conn, compressed))
				op, data, compressed = next_msg()
			end
			coroutine.yield()
		end
	end,
	methods = methods,
}
"#;

const LUA_PARTS_KEY: &str = "service_utils.WS.connection_parts";

/// The table of [`LUA_PARTS`] of this Lua state (`msg`, `call`, `methods`).
fn lua_parts(lua: &Lua) -> mlua::Result<Table> {
    if let Some(t) = lua.named_registry_value::<Option<Table>>(LUA_PARTS_KEY)? {
        return Ok(t);
    }
    let t: Table = lua
        .load(LUA_PARTS)
        .set_name("=service_utils.WS.connection")
        .call(answers::MSG_TYPE_REFUSED)?;
    lua.set_named_registry_value(LUA_PARTS_KEY, &t)?;
    Ok(t)
}

/// What handler calls need, looked up once per connection: `call(f, op, data, conn, compressed)`
/// builds the `msg` table and calls `f` with it.
pub fn handler_caller(lua: &Lua) -> mlua::Result<Function> {
    lua_parts(lua)?.get("call")
}

/// The body of a connection's message coroutine: `run(f, conn, next_msg)`.
pub fn message_runner(lua: &Lua) -> mlua::Result<Function> {
    lua_parts(lua)?.get("run")
}

/// Builds the `msg` table handed to handler functions and returned by `recv`: the
/// original fields (`op_code`, `flags`, `payload_len`, `buf`, `_ss`) plus `data`, `conn`
/// and `compressed` (it came compressed: permessage-deflate).
pub fn message_table(
    lua: &Lua,
    conn: &AnyUserData,
    op: u8,
    payload: &[u8],
    compressed: bool,
) -> mlua::Result<Table> {
    let make: Function = lua_parts(lua)?.get("msg")?;
    make.call((op, lua.create_string(payload)?, conn, compressed))
}

/// The synchronous half of `send` and `try_send` (LUA_PARTS): queues a message on `conn`.
/// Returns true, or false — for try_send: the queue was full and nothing was queued; for
/// send: it was queued and the caller must wait for room (`_wait_room`) — or nil, err, kind.
fn queue_message(
    conn: &Connection,
    data: &[u8],
    op: u8,
    send: bool,
    compress: bool,
) -> mlua::Result<Answer> {
    let what = if send { "send" } else { "try_send" };
    if op != opcode::TEXT && op != opcode::BINARY {
        return Err(mlua::Error::runtime(format!(
            "{what}: opcode {op} is not a message's"
        )));
    }
    if !send && conn.engine().is_full() {
        return Ok(done(false));
    }
    if let Err(e) = conn.send(op, data, compress) {
        return answers::sent(what, Err(e));
    }
    Ok(done(!(send && conn.engine().is_full())))
}

/// The Lua object of `conn` (`msg.conn`, what `ws.connect` returns).
pub fn connection_userdata(
    lua: &Lua,
    conn: Rc<Connection>,
    topics: Option<Rc<Topics>>,
) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LuaConnection(conn, topics))
}

/// The topics of the server a connection belongs to; clients have none (misuse).
fn server_topics<'a>(conn: &'a LuaConnection, what: &str) -> mlua::Result<&'a Rc<Topics>> {
    conn.1.as_ref().ok_or_else(|| {
        mlua::Error::runtime(format!(
            "{what}: only a server's connections have topics (publish from the server)"
        ))
    })
}

/// The waiting half of `send`: true once the queue has room, or — the peer has not read
/// for `send_timeout`, and the connection is closed (1008) — `nil, "send timeout",
/// "timeout"`.
async fn wait_room(conn: Rc<Connection>) -> mlua::Result<Answer> {
    if runtime::wait("send", async move { conn.wait_room().await }).await? {
        Ok(done(true))
    } else {
        Ok(failed("send timeout".to_owned(), "timeout"))
    }
}

/// `close(code, reason)`: starts the closing handshake; from the main chunk it also waits
/// (bounded by twice `close_timeout`) for the peer's answer and the TCP close.
async fn close(conn: Rc<Connection>, code: u16, reason: String) -> mlua::Result<Answer> {
    let answer = answers::closed(conn.close(code, &reason))?;
    if answer.0.is_none() {
        return Ok(answer);
    }
    if !runtime::is_driving() {
        let limit = conn.engine().settings().close_timeout * 2;
        let _ = runtime::block_on("close", async {
            crate::standalone::timers::timeout(limit, conn.wait_ended()).await
        })?;
    }
    Ok(done(true))
}

/// The `ws_connection` object handed to Lua: the connection, and the topics of its server
/// (`None` for a client's).
#[derive(Clone)]
pub struct LuaConnection(pub Rc<Connection>, Option<Rc<Topics>>);

impl UserData for LuaConnection {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.info.id));
        fields.add_field_method_get("host", |_, this| Ok(this.0.info.host()));
        fields.add_field_method_get("port", |_, this| Ok(this.0.info.port));
        fields.add_field_method_get("path", |_, this| Ok(this.0.info.path.clone()));
        fields.add_field_method_get("query", |_, this| Ok(this.0.info.query.clone()));
        fields.add_field_method_get("handler", |_, this| Ok(this.0.info.handler_name.as_deref().map(str::to_owned)));
        fields.add_field_method_get("msg_handler", |_, this| {
            Ok(this.0.info.handler_name.as_deref().map(str::to_owned))
        });
        fields.add_field_method_get("is_TLS", |_, this| Ok(this.0.info.is_tls));
        fields.add_field_method_get("subprotocol", |_, this| Ok(this.0.info.subprotocol.clone()));
        // The original code reaches the socket as `conn.ss` / `msg._ss`: here that is the
        // connection itself, so `ws_util.send_msg({_ss = msg._ss}, ...)` works.
        fields.add_field_function_get("ss", |_, ud| Ok(ud));
        fields.add_field_function_get("_ss", |_, ud| Ok(ud));
        // `send` and `try_send` are Lua functions (LUA_PARTS) over the connection's queue
        // function and `_wait_room`.
        fields.add_meta_field_with(MetaMethod::Index, |lua| {
            lua_parts(lua)?.get::<Table>("methods")
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // _queue() -> the connection's queue function (LUA_PARTS, made at its first send).
        methods.add_method("_queue", |lua, this, ()| {
            let conn = Rc::clone(&this.0);
            lua.create_function(
                move |_, (data, op, send, compress): (mlua::String, u8, bool, bool)| {
                    queue_message(&conn, &data.as_bytes(), op, send, compress)
                },
            )
        });
        // _wait_room() -> true | nil, "send timeout", "timeout": the waiting half of `send`.
        methods.add_async_method("_wait_room", |_, this: UserDataRef<Self>, ()| async move {
            let conn = Rc::clone(&this.0);
            drop(this);
            wait_room(conn).await
        });
        // recv([timeout]) -> msg | nil, "timeout" | nil, "closed", code, reason
        methods.add_async_function(
            "recv",
            |lua, (ud, limit): (AnyUserData, Option<f64>)| async move {
                let limit = seconds_arg("recv", limit)?;
                let conn = Rc::clone(&ud.borrow::<Self>()?.0);
                let Some(inbox) = conn.inbox() else {
                    return Err(mlua::Error::runtime(answers::RECV_WITH_HANDLER));
                };
                Ok(match runtime::wait("recv", inbox.next(limit)).await? {
                    Ok((op, data, compressed)) => (
                        Some(message_table(&lua, &ud, op, &data, compressed)?),
                        None,
                        None,
                        None,
                    ),
                    Err(RecvEnd::Timeout) => (None, Some("timeout"), None, None),
                    Err(RecvEnd::Closed(code, reason)) => {
                        (None, Some("closed"), Some(code), Some(reason))
                    }
                })
            },
        );
        // ping([payload]) -> true | nil, err, kind
        methods.add_method("ping", |_, this, payload: Option<mlua::String>| {
            let payload = payload.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
            answers::sent("ping", this.0.ping(&payload))
        });
        // close([code [, reason]]) -> true | nil, err, kind. Starts the closing handshake; from
        // the main chunk it also waits (bounded) for the peer's answer and the TCP close.
        methods.add_async_method(
            "close",
            |_, this: UserDataRef<Self>, (code, reason): (Option<u16>, Option<String>)| async move {
                let conn = Rc::clone(&this.0);
                drop(this);
                close(
                    conn,
                    code.unwrap_or(close_code::NORMAL),
                    reason.unwrap_or_default(),
                )
                .await
            },
        );
        // subscribe(topic) -> true | nil, err, kind: messages published to `topic` on this
        // connection's server come to it (server connections only).
        methods.add_method("subscribe", |_, this, topic: mlua::String| {
            let topics = server_topics(this, "subscribe")?;
            let topic = topic.to_str()?;
            if !this.0.engine().is_open() {
                return Ok(answers::closing("subscribe"));
            }
            match topics.subscribe(&this.0, &topic) {
                Ok(()) => Ok(done(true)),
                Err(e) => answers::subscribe_refused(e, &topic),
            }
        });
        // unsubscribe(topic) -> true | false (was not subscribed)
        methods.add_method("unsubscribe", |_, this, topic: mlua::String| {
            let topics = server_topics(this, "unsubscribe")?;
            Ok(topics.unsubscribe(this.0.info.id, &topic.to_str()?))
        });
        // topics() -> the list of topics this connection subscribes to
        methods.add_method("topics", |_, this, ()| {
            Ok(server_topics(this, "topics")?.topics_of(this.0.info.id))
        });
        methods.add_method("is_open", |_, this, ()| Ok(this.0.engine().is_open()));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            let c = &this.0;
            let engine = c.engine();
            let state = match engine.state() {
                State::Open => "open",
                State::ClosingByUs | State::ClosingByPeer(_) => "closing",
                State::Closed(_) => "closed",
            };
            let role = match engine.role() {
                Role::Server => "from",
                Role::Client => "to",
            };
            Ok(format!(
                "ws_connection #{} {} {role} {} ({state})",
                c.info.id, c.info.path, c.info.peer
            ))
        });
    }
}

/// `publish(topic, data [, {msg_type = "TEXT"|"BINARY", exclude = conn}])` on `servers`:
/// the number of connections it was queued for. Misuse (a bad `msg_type`, text that is
/// not UTF-8, a topic name too long) raises.
pub fn publish_from_lua(
    servers: &[Rc<Topics>],
    topic: &mlua::String,
    data: &mlua::String,
    opts: Option<mlua::Table>,
) -> mlua::Result<usize> {
    let topic = topic.to_str()?;
    let (msg_type, exclude) = match &opts {
        Some(t) => (
            t.get::<Option<String>>("msg_type")?,
            t.get::<Option<mlua::UserDataRef<LuaConnection>>>("exclude")?
                .map(|c| c.0.info.id),
        ),
        None => (None, None),
    };
    let data = data.as_bytes();
    let op = answers::publish_opcode(&topic, msg_type.as_deref(), &data)?;
    Ok(servers
        .iter()
        .map(|t| t.publish(&topic, op, &data, exclude))
        .sum())
}
