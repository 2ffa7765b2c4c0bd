//! connection: one open WebSocket as Lua sees it (the `ws_connection` object) and the
//! writing of bytes to it.
//!
//! Sending never waits for the socket. A small frame is encoded into the connection's
//! outbox and a writer task flushes whatever has accumulated in one write, so several
//! sends made by one handler call cost one syscall. A large frame, when nothing is queued,
//! goes to the socket straight from the Lua string (one copy fewer); what the socket does
//! not take is queued. The outbox is bounded: above `high_water` bytes a sender waits
//! (suspending only its own coroutine) until the writer has drained it.

use crate::codec::{self, close_code, encode_frame, encode_header, opcode, MAX_HEADER_LEN};
use bytes::BytesMut;
use mlua::{MetaMethod, Table, UserData, UserDataFields, UserDataMethods, UserDataRef};
use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Payloads at least this large skip the outbox when nothing is queued; smaller ones are
/// batched, since a syscall per small message costs more than copying it.
const DIRECT_WRITE_MIN: usize = 16 << 10;

/// Where the closing handshake stands (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A close frame has been queued (by us, or as the answer to the peer's); nothing
    /// but the close may be sent any more.
    Closing,
    /// The socket is gone (or the writer failed); sends fail at once.
    Closed,
}

/// The shared state of one connection: held by its reader task, its writer task and
/// every Lua reference to the `ws_connection` object.
pub struct Connection {
    /// Serial number within the server, for logs and `tostring`.
    pub id: u64,
    pub peer: SocketAddr,
    /// The request path the connection was opened on (`/chat`).
    pub path: String,
    /// The handler module serving it (`handlers.chat`).
    pub handler_name: String,
    state: Cell<State>,
    /// Encoded frames not yet handed to the socket.
    outbox: RefCell<BytesMut>,
    /// Above this many queued bytes, `send` waits for the writer.
    high_water: usize,
    /// Tells the writer there is something to write (or that it should finish).
    wake_writer: Notify,
    /// Tells waiting senders the writer has emptied the outbox.
    drained: Notify,
    /// Set by the reader when the connection ends: the writer flushes and shuts down.
    finished: Cell<bool>,
    /// The socket's write half, shared by direct writes and the writer task; `None` once
    /// shut down (dropping the last reference sends FIN).
    socket: RefCell<Option<Rc<OwnedWriteHalf>>>,
    /// True while the writer holds bytes taken from the outbox that are not yet written:
    /// a direct write then would overtake them.
    writing: Cell<bool>,
}

impl Connection {
    pub fn new(id: u64, peer: SocketAddr, path: String, handler_name: String, high_water: usize, socket: OwnedWriteHalf) -> Rc<Self> {
        Rc::new(Connection {
            id,
            peer,
            path,
            handler_name,
            state: Cell::new(State::Open),
            outbox: RefCell::new(BytesMut::new()),
            high_water,
            wake_writer: Notify::new(),
            drained: Notify::new(),
            finished: Cell::new(false),
            socket: RefCell::new(Some(Rc::new(socket))),
            writing: Cell::new(false),
        })
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    /// Sends or queues one frame. Server frames are never masked (RFC 6455 §5.1).
    fn queue_frame(&self, op: u8, payload: &[u8]) {
        let mut outbox = self.outbox.borrow_mut();
        if payload.len() >= DIRECT_WRITE_MIN && outbox.is_empty() && !self.writing.get() {
            let mut header = [0u8; MAX_HEADER_LEN];
            let header_len = encode_header(&mut header, true, op, payload.len(), None);
            let written = self.try_write(&[IoSlice::new(&header[..header_len]), IoSlice::new(payload)]);
            if written < header_len {
                outbox.extend_from_slice(&header[written..header_len]);
                outbox.extend_from_slice(payload);
            } else {
                outbox.extend_from_slice(&payload[written - header_len..]);
            }
        } else {
            encode_frame(&mut outbox, true, op, payload, None);
        }
        if !outbox.is_empty() {
            self.wake_writer.notify_one();
        }
    }

    /// Writes what the socket takes without waiting; errors are left to the writer.
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> usize {
        match self.socket.borrow().as_ref().map(|s| s.try_write_vectored(bufs)) {
            Some(Ok(n)) => n,
            _ => 0,
        }
    }

    /// Queues a data message; fails once a close has been queued or the socket is gone.
    pub fn queue_message(&self, op: u8, payload: &[u8]) -> Result<(), &'static str> {
        match self.state.get() {
            State::Open => {
                self.queue_frame(op, payload);
                Ok(())
            }
            State::Closing => Err("connection is closing"),
            State::Closed => Err("connection is closed"),
        }
    }

    /// Answers a ping with a pong carrying the same payload (§5.5.3), unless closing.
    pub fn queue_pong(&self, payload: &[u8]) {
        if self.state.get() == State::Open {
            self.queue_frame(opcode::PONG, payload);
        }
    }

    /// Starts (or answers) the closing handshake. Returns false when a close was already
    /// queued. `None` sends a close frame without a body.
    pub fn queue_close(&self, status: Option<(u16, &str)>) -> bool {
        if self.state.get() != State::Open {
            return false;
        }
        let payload = status.map(|(code, reason)| codec::close_payload(code, reason)).unwrap_or_default();
        self.queue_frame(opcode::CLOSE, &payload);
        self.state.set(State::Closing);
        true
    }

    /// Waits until the outbox is below the high-water mark (or the socket is gone).
    pub async fn wait_writable(&self) {
        loop {
            let drained = self.drained.notified();
            if self.outbox.borrow().len() <= self.high_water || self.state.get() == State::Closed {
                return;
            }
            drained.await;
        }
    }

    /// Ends the connection: the writer flushes what is queued, then shuts the socket.
    pub fn finish(&self) {
        self.finished.set(true);
        self.wake_writer.notify_one();
    }

    fn mark_closed(&self) {
        self.state.set(State::Closed);
        self.socket.borrow_mut().take();
        self.outbox.borrow_mut().clear();
        self.drained.notify_waiters();
    }

    /// The writer task: flushes the outbox whenever frames are queued, reusing two
    /// buffers, until [`finish`](Self::finish) is called and everything is written; then
    /// shuts the socket's write half.
    pub async fn write_loop(self: Rc<Self>) {
        let Some(socket) = self.socket.borrow().clone() else { return };
        let mut spare = BytesMut::new();
        loop {
            let woken = self.wake_writer.notified();
            {
                let mut outbox = self.outbox.borrow_mut();
                if outbox.is_empty() {
                    drop(outbox);
                    if self.finished.get() {
                        break;
                    }
                    woken.await;
                    continue;
                }
                std::mem::swap(&mut *outbox, &mut spare);
            }
            self.writing.set(true);
            let written = write_all(&socket, &spare).await;
            self.writing.set(false);
            if !written {
                break;
            }
            spare.clear();
            self.drained.notify_waiters();
        }
        drop(socket);
        self.mark_closed();
    }
}

/// Writes all of `buf`, waiting for the socket as needed; false on error.
async fn write_all(socket: &OwnedWriteHalf, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match socket.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Message types a Lua caller may name in `{msg_type = ...}`.
fn message_opcode(opts: Option<Table>) -> mlua::Result<u8> {
    let kind: Option<String> = match opts {
        Some(t) => t.get("msg_type")?,
        None => None,
    };
    match kind.as_deref() {
        None | Some("TEXT") => Ok(opcode::TEXT),
        Some("BINARY") => Ok(opcode::BINARY),
        Some(other) => Err(mlua::Error::runtime(format!("send: msg_type must be \"TEXT\" or \"BINARY\", got \"{other}\""))),
    }
}

/// The `ws_connection` object handed to Lua.
#[derive(Clone)]
pub struct LuaConnection(pub Rc<Connection>);

impl UserData for LuaConnection {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.id));
        fields.add_field_method_get("host", |_, this| Ok(this.0.peer.ip().to_string()));
        fields.add_field_method_get("port", |_, this| Ok(this.0.peer.port()));
        fields.add_field_method_get("path", |_, this| Ok(this.0.path.clone()));
        fields.add_field_method_get("handler", |_, this| Ok(this.0.handler_name.clone()));
        fields.add_field_method_get("is_TLS", |_, _| Ok(false));
        // The original code reaches the socket as `conn.ss` / `msg._ss`: here that is the
        // connection itself, so `ws_util.send_msg({_ss = msg._ss}, ...)` works.
        fields.add_field_function_get("ss", |_, ud| Ok(ud));
        fields.add_field_function_get("_ss", |_, ud| Ok(ud));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // send(data [, {msg_type = "TEXT"|"BINARY"}]) -> true | nil, err
        methods.add_async_method("send", |_, this: UserDataRef<Self>, (data, opts): (mlua::String, Option<Table>)| async move {
            let op = message_opcode(opts)?;
            let conn = Rc::clone(&this.0);
            drop(this);
            let bytes = data.as_bytes();
            if op == opcode::TEXT && std::str::from_utf8(&bytes).is_err() {
                return Ok((None, Some("send: text message is not valid UTF-8 (send it with msg_type = \"BINARY\")".to_owned())));
            }
            if let Err(e) = conn.queue_message(op, &bytes) {
                return Ok((None, Some(format!("send: {e}"))));
            }
            drop(bytes);
            conn.wait_writable().await;
            Ok((Some(true), None))
        });
        // ping([payload]) -> true | nil, err
        methods.add_method("ping", |_, this, payload: Option<mlua::String>| {
            let payload = payload.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
            if payload.len() > 125 {
                return Err(mlua::Error::runtime("Control frames must not have messages longer than 125 bytes"));
            }
            Ok(match this.0.queue_message(opcode::PING, &payload) {
                Ok(()) => (Some(true), None),
                Err(e) => (None, Some(format!("ping: {e}"))),
            })
        });
        // close([code [, reason]]) -> true | nil, err: starts the closing handshake.
        methods.add_method("close", |_, this, (code, reason): (Option<u16>, Option<String>)| {
            let code = code.unwrap_or(close_code::NORMAL);
            let reason = reason.unwrap_or_default();
            if !close_code::is_sendable(code) {
                return Err(mlua::Error::runtime(format!("close: {code} is not a close code that may be sent")));
            }
            if reason.len() > 123 {
                return Err(mlua::Error::runtime("Control frames must not have messages longer than 125 bytes"));
            }
            Ok(if this.0.queue_close(Some((code, &reason))) { (Some(true), None) } else { (None, Some("close: connection is already closing".to_owned())) })
        });
        methods.add_method("is_open", |_, this, ()| Ok(this.0.state() == State::Open));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            let c = &this.0;
            let state = match c.state() {
                State::Open => "open",
                State::Closing => "closing",
                State::Closed => "closed",
            };
            Ok(format!("ws_connection #{} {} from {} ({})", c.id, c.path, c.peer, state))
        });
    }
}
