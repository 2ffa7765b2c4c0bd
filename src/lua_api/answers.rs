//! answers: what a connection's methods return to Lua, the same in both runtimes —
//! `true`, `false` (`try_send`: the queue is full), or `nil, "<method>: <why>", kind` for
//! what the connection's state refuses; misuse (a ping over 125 bytes, a close code that
//! may not be sent, a bad topic name or `msg_type`) raises instead.

use ws_proto::engine::{CloseError, SendError};
use ws_proto::subscriptions::{self, PublishError, SubscribeError, MAX_TOPIC_BYTES};

/// The message `recv` and `ws_util.recv_frame` raise on a connection with a handler.
pub const RECV_WITH_HANDLER: &str =
    "Cannot invoke ws_util.recv_frame when message_handler is set for the websocket";

/// `ok` | `nil, message, kind`.
pub type Answer = (Option<bool>, Option<String>, Option<&'static str>);

pub fn done(ok: bool) -> Answer {
    (Some(ok), None, None)
}

pub fn failed(message: String, kind: &'static str) -> Answer {
    (None, Some(message), Some(kind))
}

/// `nil, "<what>: connection is closing", "closing"`.
pub fn closing(what: &str) -> Answer {
    failed(format!("{what}: connection is closing"), "closing")
}

/// The answer to a `send`, `try_send` or `ping` (`what`) that the engine gave `r`.
pub fn sent(what: &str, r: Result<(), SendError>) -> mlua::Result<Answer> {
    match r {
        Ok(()) => Ok(done(true)),
        Err(e @ SendError::ControlTooLong) => Err(mlua::Error::runtime(e.to_string())),
        Err(e) => Ok(failed(format!("{what}: {e}"), e.kind())),
    }
}

/// The answer to `close(code, reason)` that the engine gave `r`.
pub fn closed(r: Result<(), CloseError>) -> mlua::Result<Answer> {
    match r {
        Ok(()) => Ok(done(true)),
        Err(CloseError::AlreadyClosing) => Ok(failed(
            format!("close: {}", CloseError::AlreadyClosing),
            "closing",
        )),
        Err(e @ CloseError::NotSendable(_)) => Err(mlua::Error::runtime(format!("close: {e}"))),
        Err(e) => Err(mlua::Error::runtime(e.to_string())),
    }
}

/// The answer to a `subscribe(topic)` the subscription rules refused.
pub fn subscribe_refused(e: SubscribeError, topic: &str) -> mlua::Result<Answer> {
    match e {
        SubscribeError::BadName => Err(mlua::Error::runtime(format!(
            "subscribe: a topic is 1 to {MAX_TOPIC_BYTES} bytes, got {}",
            topic.len()
        ))),
        SubscribeError::TooMany(n) => Ok(failed(
            format!("subscribe: this connection already has {n} topics (max_topics)"),
            "limit",
        )),
    }
}

/// The error of `<what>` (`send`, `publish`...) given a `msg_type` other than TEXT or
/// BINARY, as a Lua format string (`what`, the value given), so that the Lua parts of both
/// runtimes (`core.MSG_TYPE_REFUSED`) raise it in the same words.
pub const MSG_TYPE_REFUSED: &str = r#"%s: msg_type must be "TEXT" or "BINARY", got "%s""#;

/// [`MSG_TYPE_REFUSED`] for `what` and `got`.
pub fn msg_type_refused(what: &str, got: &str) -> String {
    MSG_TYPE_REFUSED
        .replacen("%s", what, 1)
        .replacen("%s", got, 1)
}

/// The opcode of a `publish(topic, data, {msg_type = ...})`; misuse raises.
pub fn publish_opcode(topic: &str, msg_type: Option<&str>, data: &[u8]) -> mlua::Result<u8> {
    subscriptions::check_publish(topic, msg_type, data).map_err(|e| {
        mlua::Error::runtime(match e {
            PublishError::BadTopic(len) => {
                format!("publish: a topic is 1 to {MAX_TOPIC_BYTES} bytes, got {len}")
            }
            PublishError::BadMsgType(got) => msg_type_refused("publish", &got),
            PublishError::NotUtf8 => {
                "publish: a TEXT message must be UTF-8 (send binary with msg_type = \"BINARY\")"
                    .to_owned()
            }
        })
    })
}
