//! lua_connection: the `ws_connection` object Lua holds in the standalone runtime
//! (`msg.conn`, what `ws.connect` returns) and the `msg` table handlers are given.
//!
//! Misuse raises (a bad `msg_type`, a ping over 125 bytes, a close code that may not be
//! sent); what the connection's state refuses is returned as `nil, message`.

use crate::codec::{close_code, opcode, Role};
use crate::connection::Connection;
use crate::engine::{CloseError, SendError, State};
use crate::inbox::RecvEnd;
use crate::runtime;
use mlua::{
    AnyUserData, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, UserDataRef,
};
use std::rc::Rc;
use std::time::Duration;

/// The message `recv` and `ws_util.recv_frame` raise on a connection with a handler.
pub const RECV_WITH_HANDLER: &str =
    "Cannot invoke ws_util.recv_frame when message_handler is set for the websocket";

/// Message types a Lua caller may name in `{msg_type = ...}`.
fn message_opcode(opts: Option<Table>) -> mlua::Result<u8> {
    let kind: Option<String> = match opts {
        Some(t) => t.get("msg_type")?,
        None => None,
    };
    match kind.as_deref() {
        None | Some("TEXT") => Ok(opcode::TEXT),
        Some("BINARY") => Ok(opcode::BINARY),
        Some(other) => Err(mlua::Error::runtime(format!(
            "send: msg_type must be \"TEXT\" or \"BINARY\", got \"{other}\""
        ))),
    }
}

fn seconds_arg(what: &str, s: Option<f64>) -> mlua::Result<Option<Duration>> {
    s.map(|s| crate::options::seconds_value(what, "timeout", s))
        .transpose()
}

/// `nil, "<what>: <why>"` for a refused send; a ping over 125 bytes is misuse and raises.
fn refused(what: &str, e: SendError) -> mlua::Result<Answer> {
    match e {
        SendError::ControlTooLong => Err(mlua::Error::runtime(e.to_string())),
        _ => Ok(failed(format!("{what}: {e}"), e.kind())),
    }
}

/// What `send`, `try_send`, `ping` and `close` return: `true`, `false` (`try_send` only:
/// the queue is full), or `nil, message, kind`.
type Answer = (Option<bool>, Option<String>, Option<&'static str>);

fn done(ok: bool) -> Answer {
    (Some(ok), None, None)
}

fn failed(message: String, kind: &'static str) -> Answer {
    (None, Some(message), Some(kind))
}

/// Builds the `msg` table handed to handler functions and returned by `recv`: the
/// original fields (`op_code`, `flags`, `payload_len`, `buf`, `_ss`) plus `data` and `conn`.
pub fn message_table(lua: &Lua, conn: &AnyUserData, op: u8, payload: &[u8]) -> mlua::Result<Table> {
    let msg = lua.create_table_with_capacity(0, 7)?;
    let data = lua.create_string(payload)?;
    msg.raw_set("op_code", op)?;
    msg.raw_set("flags", 0x80 | op)?;
    msg.raw_set("payload_len", payload.len())?;
    msg.raw_set("buf", &data)?;
    msg.raw_set("data", data)?;
    msg.raw_set("_ss", conn)?;
    msg.raw_set("conn", conn)?;
    Ok(msg)
}

/// The `ws_connection` object handed to Lua.
#[derive(Clone)]
pub struct LuaConnection(pub Rc<Connection>);

impl UserData for LuaConnection {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.info.id));
        fields.add_field_method_get("host", |_, this| Ok(this.0.info.host.clone()));
        fields.add_field_method_get("port", |_, this| Ok(this.0.info.port));
        fields.add_field_method_get("path", |_, this| Ok(this.0.info.path.clone()));
        fields.add_field_method_get("handler", |_, this| Ok(this.0.info.handler_name.clone()));
        fields.add_field_method_get("msg_handler", |_, this| {
            Ok(this.0.info.handler_name.clone())
        });
        fields.add_field_method_get("is_TLS", |_, this| Ok(this.0.info.is_tls));
        fields.add_field_method_get("subprotocol", |_, this| Ok(this.0.info.subprotocol.clone()));
        // The original code reaches the socket as `conn.ss` / `msg._ss`: here that is the
        // connection itself, so `ws_util.send_msg({_ss = msg._ss}, ...)` works.
        fields.add_field_function_get("ss", |_, ud| Ok(ud));
        fields.add_field_function_get("_ss", |_, ud| Ok(ud));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // send(data [, {msg_type = "TEXT"|"BINARY"}]) -> true | nil, err, kind
        methods.add_async_method(
            "send",
            |_, this: UserDataRef<Self>, (data, opts): (mlua::String, Option<Table>)| async move {
                let op = message_opcode(opts)?;
                let conn = Rc::clone(&this.0);
                drop(this);
                if let Err(e) = conn.send(op, &data.as_bytes()) {
                    return refused("send", e);
                }
                let limit = conn.engine().settings().send_timeout;
                let room = runtime::wait("send", async {
                    match limit {
                        Some(d) => tokio::time::timeout(d, conn.wait_writable()).await.is_ok(),
                        None => {
                            conn.wait_writable().await;
                            true
                        }
                    }
                });
                if !room.await? {
                    // The peer has not read for send_timeout: give up on it (RFC 6455 §7.4.1: 1008).
                    conn.fail(close_code::POLICY, "send timeout");
                    return Ok(failed("send timeout".to_owned(), "timeout"));
                }
                Ok(done(true))
            },
        );
        // try_send(data [, opts]) -> true | false (queue full: nothing queued) | nil, err, kind
        methods.add_method(
            "try_send",
            |_, this, (data, opts): (mlua::String, Option<Table>)| {
                let op = message_opcode(opts)?;
                if this.0.engine().is_full() {
                    return Ok(done(false));
                }
                match this.0.send(op, &data.as_bytes()) {
                    Ok(()) => Ok(done(true)),
                    Err(e) => refused("try_send", e),
                }
            },
        );
        // recv([timeout]) -> msg | nil, "timeout" | nil, "closed", code, reason
        methods.add_async_function(
            "recv",
            |lua, (ud, limit): (AnyUserData, Option<f64>)| async move {
                let limit = seconds_arg("recv", limit)?;
                let conn = Rc::clone(&ud.borrow::<Self>()?.0);
                let Some(inbox) = conn.inbox() else {
                    return Err(mlua::Error::runtime(RECV_WITH_HANDLER));
                };
                Ok(match runtime::wait("recv", inbox.next(limit)).await? {
                    Ok((op, data)) => {
                        (Some(message_table(&lua, &ud, op, &data)?), None, None, None)
                    }
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
            match this.0.ping(&payload) {
                Ok(()) => Ok(done(true)),
                Err(e) => refused("ping", e),
            }
        });
        // close([code [, reason]]) -> true | nil, err, kind. Starts the closing handshake; from
        // the main chunk it also waits (bounded) for the peer's answer and the TCP close.
        methods.add_async_method(
            "close",
            |_, this: UserDataRef<Self>, (code, reason): (Option<u16>, Option<String>)| async move {
                let conn = Rc::clone(&this.0);
                drop(this);
                let code = code.unwrap_or(close_code::NORMAL);
                match conn.close(code, reason.as_deref().unwrap_or_default()) {
                    Ok(()) => {}
                    Err(CloseError::AlreadyClosing) => {
                        return Ok(failed(
                            "close: connection is already closing".to_owned(),
                            "closing",
                        ))
                    }
                    Err(e @ CloseError::NotSendable(_)) => {
                        return Err(mlua::Error::runtime(format!("close: {e}")))
                    }
                    Err(e) => return Err(mlua::Error::runtime(e.to_string())),
                }
                if !runtime::is_driving() {
                    let limit = conn.engine().settings().close_timeout * 2;
                    let _ = runtime::block_on("close", async {
                        tokio::time::timeout(limit, conn.wait_ended()).await
                    })?;
                }
                Ok(done(true))
            },
        );
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
