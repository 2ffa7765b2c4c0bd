//! connection: one open WebSocket as Lua sees it (the `ws_connection` object), the
//! writing of bytes to it and, for connections without a handler, the inbox `recv` reads.
//!
//! Sending never waits for the socket. A small frame is encoded into the connection's
//! outbox and a writer task flushes whatever has accumulated in one write, so several
//! sends made by one handler call cost one syscall. On a plain server socket, a large
//! frame goes to the socket straight from the Lua string when nothing is queued (one copy
//! fewer); what the socket does not take is queued. The outbox is bounded: above
//! `high_water` bytes a sender waits (suspending only its own coroutine, or driving the
//! loop when called from the main chunk) until the writer has drained it.

use crate::codec::{self, close_code, encode_frame, encode_header, opcode, Role, MAX_HEADER_LEN};
use crate::runtime;
use crate::session::message_table;
use crate::stats::{bump, Stats};
use bytes::{Bytes, BytesMut};
use mlua::{
    AnyUserData, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, UserDataRef,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_native_tls::TlsStream;

/// Payloads at least this large skip the outbox when nothing is queued; smaller ones are
/// batched, since a syscall per small message costs more than copying it.
const DIRECT_WRITE_MIN: usize = 16 << 10;

/// The message `recv` and `ws_util.recv_frame` raise on a connection with a handler.
pub const RECV_WITH_HANDLER: &str =
    "Cannot invoke ws_util.recv_frame when message_handler is set for the websocket";

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

/// The write half of the transport, owned by the writer task.
pub enum WriteSide {
    /// Plain TCP: shared with the connection for direct writes.
    Plain(Rc<OwnedWriteHalf>),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl WriteSide {
    /// Writes all of `buf`, waiting for the socket as needed; false on error.
    async fn write_all(&mut self, mut buf: &[u8]) -> bool {
        match self {
            WriteSide::Plain(socket) => {
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
            WriteSide::Tls(w) => w.write_all(buf).await.is_ok(),
        }
    }

    /// Sends FIN (TLS: close_notify too). Plain TCP does so when the last handle drops.
    async fn shutdown(self) {
        if let WriteSide::Tls(mut w) = self {
            let _ = w.shutdown().await;
        }
    }
}

/// What a connection is, fixed when it opens.
pub struct ConnectionInfo {
    /// Serial number (per server; per process for clients), for logs and `tostring`.
    pub id: u64,
    pub peer: SocketAddr,
    /// The host as named by the URL (client) or the peer's address (server).
    pub host: String,
    pub port: u16,
    /// The request path the connection was opened on (`/chat`).
    pub path: String,
    /// The handler module serving it (`handlers.chat`); `None` for a client read with `recv`.
    pub handler_name: Option<String>,
    pub role: Role,
    pub is_tls: bool,
    /// Above this many queued bytes, `send` waits for the writer.
    pub high_water: usize,
    /// Capacity of the inbox in bytes (connections without a handler).
    pub inbox_bytes: usize,
    /// How long `close` from the main chunk waits for the peer's answer.
    pub close_timeout: Duration,
    /// How long `send` waits for room before closing with 1008 (`None`: forever).
    pub send_timeout: Option<Duration>,
    /// The subprotocol agreed in the handshake, if any.
    pub subprotocol: Option<String>,
    /// The server's counters (`None` for clients).
    pub stats: Option<Rc<Stats>>,
}

/// The shared state of one connection: held by its frame loop, its writer task and
/// every Lua reference to the `ws_connection` object.
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    info: ConnectionInfo,
    state: Cell<State>,
    /// Encoded frames not yet handed to the socket.
    outbox: RefCell<BytesMut>,
    /// Tells the writer there is something to write (or that it should finish).
    wake_writer: Notify,
    /// Tells waiting senders the writer has emptied the outbox.
    drained: Notify,
    /// Set by the frame loop when the connection ends: the writer flushes and shuts down.
    finished: Cell<bool>,
    /// Plain TCP server sockets: the write half for direct writes; `None` otherwise or
    /// once closed.
    direct: RefCell<Option<Rc<OwnedWriteHalf>>>,
    /// True while the writer holds bytes taken from the outbox that are not yet written:
    /// a direct write then would overtake them.
    writing: Cell<bool>,
    /// Messages for `recv`, when no handler takes them.
    inbox: Option<Inbox>,
    /// Set once the frame loop has ended (socket closed).
    ended: Cell<bool>,
    ended_notify: Notify,
    /// Wakes the frame loop when a close is queued from elsewhere (another handler).
    closing: Notify,
    /// When the last data message went either way (for the idle timeout).
    last_data: Cell<std::time::Instant>,
}

impl Connection {
    /// A connection writing through `writer` (owned by its writer task). A plain server
    /// socket is also kept for direct writes; clients mask every frame, so never write
    /// straight from the caller's bytes.
    pub fn new(info: ConnectionInfo, writer: &WriteSide) -> Rc<Self> {
        let inbox = info
            .handler_name
            .is_none()
            .then(|| Inbox::new(info.inbox_bytes));
        let direct = match writer {
            WriteSide::Plain(socket) if info.role == Role::Server => Some(Rc::clone(socket)),
            _ => None,
        };
        Rc::new(Connection {
            id: info.id,
            peer: info.peer,
            state: Cell::new(State::Open),
            outbox: RefCell::new(BytesMut::new()),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            finished: Cell::new(false),
            direct: RefCell::new(direct),
            writing: Cell::new(false),
            inbox,
            ended: Cell::new(false),
            ended_notify: Notify::new(),
            closing: Notify::new(),
            last_data: Cell::new(std::time::Instant::now()),
            info,
        })
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    /// Sends or queues one frame. Server frames are never masked, client frames always,
    /// each with a fresh random mask (RFC 6455 §5.1, §5.3).
    fn queue_frame(&self, op: u8, payload: &[u8]) {
        let mut outbox = self.outbox.borrow_mut();
        if self.info.role == Role::Client {
            encode_frame(&mut outbox, true, op, payload, Some(random_mask()));
        } else if payload.len() >= DIRECT_WRITE_MIN && outbox.is_empty() && !self.writing.get() {
            let mut header = [0u8; MAX_HEADER_LEN];
            let header_len = encode_header(&mut header, true, op, payload.len(), None);
            let written =
                self.try_write(&[IoSlice::new(&header[..header_len]), IoSlice::new(payload)]);
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

    /// Writes what the socket takes without waiting (0 without a direct socket); errors
    /// are left to the writer.
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> usize {
        match self
            .direct
            .borrow()
            .as_ref()
            .map(|s| s.try_write_vectored(bufs))
        {
            Some(Ok(n)) => n,
            _ => 0,
        }
    }

    /// Notes that a data message went either way now.
    pub fn touch(&self) {
        self.last_data.set(std::time::Instant::now());
    }

    pub fn last_data(&self) -> std::time::Instant {
        self.last_data.get()
    }

    /// Whether the outbox holds more than the high-water mark.
    pub fn is_full(&self) -> bool {
        self.outbox.borrow().len() > self.info.high_water
    }

    /// Resolves when a close has been queued (by anyone) or the socket is gone.
    pub async fn closing(&self) {
        loop {
            let notified = self.closing.notified();
            if self.state.get() != State::Open {
                return;
            }
            notified.await;
        }
    }

    /// Queues a data message; fails once a close has been queued or the socket is gone.
    pub fn queue_message(&self, op: u8, payload: &[u8]) -> Result<(), &'static str> {
        match self.state.get() {
            State::Open => {
                if op == opcode::TEXT || op == opcode::BINARY {
                    self.touch();
                    if let Some(stats) = &self.info.stats {
                        bump(&stats.messages_out, 1);
                        bump(&stats.bytes_out, payload.len() as u64);
                    }
                }
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

    /// Sends a keepalive ping, unless closing.
    pub fn queue_ping(&self, payload: &[u8]) {
        if self.state.get() == State::Open {
            self.queue_frame(opcode::PING, payload);
        }
    }

    /// Starts (or answers) the closing handshake. Returns false when a close was already
    /// queued. `None` sends a close frame without a body.
    pub fn queue_close(&self, status: Option<(u16, &str)>) -> bool {
        if self.state.get() != State::Open {
            return false;
        }
        let payload = status
            .map(|(code, reason)| codec::close_payload(code, reason))
            .unwrap_or_default();
        self.queue_frame(opcode::CLOSE, &payload);
        self.state.set(State::Closing);
        self.closing.notify_waiters();
        true
    }

    /// Waits until the outbox is below the high-water mark (or the socket is gone).
    pub async fn wait_writable(&self) {
        loop {
            let drained = self.drained.notified();
            if self.outbox.borrow().len() <= self.info.high_water
                || self.state.get() == State::Closed
            {
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

    /// Marks the frame loop as over (called last by the loop).
    pub fn mark_ended(&self) {
        self.state.set(State::Closed);
        self.ended.set(true);
        self.ended_notify.notify_waiters();
    }

    /// Waits until the frame loop has ended.
    pub async fn wait_ended(&self) {
        loop {
            let notified = self.ended_notify.notified();
            if self.ended.get() {
                return;
            }
            notified.await;
        }
    }

    fn mark_closed(&self) {
        self.state.set(State::Closed);
        self.closing.notify_waiters();
        self.direct.borrow_mut().take();
        self.outbox.borrow_mut().clear();
        self.drained.notify_waiters();
    }

    /// The writer task: flushes the outbox whenever frames are queued, reusing two
    /// buffers, until [`finish`](Self::finish) is called and everything is written; then
    /// shuts the socket's write half.
    pub async fn write_loop(self: Rc<Self>, mut socket: WriteSide) {
        let mut spare = BytesMut::new();
        loop {
            let woken = self.wake_writer.notified();
            let took = {
                let mut outbox = self.outbox.borrow_mut();
                let any = !outbox.is_empty();
                if any {
                    std::mem::swap(&mut *outbox, &mut spare);
                }
                any
            };
            if !took {
                if self.finished.get() {
                    break;
                }
                woken.await;
                continue;
            }
            self.writing.set(true);
            let written = socket.write_all(&spare).await;
            self.writing.set(false);
            if !written {
                break;
            }
            spare.clear();
            self.drained.notify_waiters();
        }
        self.mark_closed();
        socket.shutdown().await;
    }
}

/// Fresh masks for client frames: unpredictable (from the kernel's generator), drawn
/// from a pool refilled 256 masks at a time.
fn random_mask() -> [u8; 4] {
    thread_local! {
        static POOL: RefCell<([u8; 1024], usize)> = const { RefCell::new(([0; 1024], 1024)) };
    }
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used == bytes.len() {
            fill_random(bytes);
            *used = 0;
        }
        let mask = [
            bytes[*used],
            bytes[*used + 1],
            bytes[*used + 2],
            bytes[*used + 3],
        ];
        *used += 4;
        mask
    })
}

/// Fills `buf` from the kernel's random generator (getrandom(2)).
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// Messages waiting for `recv` on a connection without a handler. Bounded: while it holds
/// `max_bytes` or more, the frame loop stops reading, so TCP pushes back on the peer.
pub struct Inbox {
    queue: RefCell<VecDeque<(u8, Bytes)>>,
    bytes: Cell<usize>,
    max_bytes: usize,
    arrived: Notify,
    taken: Notify,
    /// The close code and reason once the connection has ended.
    closed: RefCell<Option<(u16, String)>>,
}

/// Why `recv` returned no message.
pub enum RecvEnd {
    Timeout,
    Closed(u16, String),
}

impl Inbox {
    fn new(max_bytes: usize) -> Self {
        Inbox {
            queue: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            max_bytes,
            arrived: Notify::new(),
            taken: Notify::new(),
            closed: RefCell::new(None),
        }
    }

    /// Adds a message, first waiting for room (one message always fits).
    pub async fn push(&self, op: u8, data: Bytes) {
        loop {
            let taken = self.taken.notified();
            if self.queue.borrow().is_empty() || self.bytes.get() + data.len() <= self.max_bytes {
                break;
            }
            taken.await;
        }
        self.bytes.set(self.bytes.get() + data.len());
        self.queue.borrow_mut().push_back((op, data));
        self.arrived.notify_waiters();
    }

    /// Records the end of the connection; `recv` returns it once the queue is empty.
    pub fn close(&self, code: u16, reason: &str) {
        *self.closed.borrow_mut() = Some((code, reason.to_owned()));
        self.arrived.notify_waiters();
    }

    /// The next message, waiting up to `limit` (forever when `None`).
    async fn next(&self, limit: Option<Duration>) -> Result<(u8, Bytes), RecvEnd> {
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        loop {
            let arrived = self.arrived.notified();
            if let Some((op, data)) = self.queue.borrow_mut().pop_front() {
                self.bytes.set(self.bytes.get() - data.len());
                self.taken.notify_waiters();
                return Ok((op, data));
            }
            if let Some((code, reason)) = self.closed.borrow().clone() {
                return Err(RecvEnd::Closed(code, reason));
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, arrived).await.is_err() {
                        return Err(RecvEnd::Timeout);
                    }
                }
                None => arrived.await,
            }
        }
    }
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
        Some(other) => Err(mlua::Error::runtime(format!(
            "send: msg_type must be \"TEXT\" or \"BINARY\", got \"{other}\""
        ))),
    }
}

fn seconds_arg(what: &str, s: Option<f64>) -> mlua::Result<Option<Duration>> {
    s.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| {
            mlua::Error::runtime(format!(
                "{what}: timeout must be a number of seconds >= 0, got {s}"
            ))
        })
    })
    .transpose()
}

/// The `ws_connection` object handed to Lua.
#[derive(Clone)]
pub struct LuaConnection(pub Rc<Connection>);

impl UserData for LuaConnection {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.id));
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
            let limit = conn.info.send_timeout;
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
                conn.queue_close(Some((close_code::POLICY, "send timeout")));
                return Ok((None, Some("send timeout".to_owned())));
            }
            Ok((Some(true), None))
        });
        // try_send(data [, opts]) -> true | false (outbox full: nothing queued) | nil, err
        methods.add_method("try_send", |_, this, (data, opts): (mlua::String, Option<Table>)| {
            let op = message_opcode(opts)?;
            let bytes = data.as_bytes();
            if op == opcode::TEXT && std::str::from_utf8(&bytes).is_err() {
                return Ok((None, Some("try_send: text message is not valid UTF-8 (send it with msg_type = \"BINARY\")".to_owned())));
            }
            if this.0.is_full() {
                return Ok((Some(false), None));
            }
            Ok(match this.0.queue_message(op, &bytes) {
                Ok(()) => (Some(true), None),
                Err(e) => (None, Some(format!("try_send: {e}"))),
            })
        });
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
        // ping([payload]) -> true | nil, err
        methods.add_method("ping", |_, this, payload: Option<mlua::String>| {
            let payload = payload.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
            if payload.len() > 125 {
                return Err(mlua::Error::runtime(
                    "Control frames must not have messages longer than 125 bytes",
                ));
            }
            Ok(match this.0.queue_message(opcode::PING, &payload) {
                Ok(()) => (Some(true), None),
                Err(e) => (None, Some(format!("ping: {e}"))),
            })
        });
        // close([code [, reason]]) -> true | nil, err. Starts the closing handshake; from
        // the main chunk it also waits (bounded) for the peer's answer and the TCP close.
        methods.add_async_method(
            "close",
            |_, this: UserDataRef<Self>, (code, reason): (Option<u16>, Option<String>)| async move {
                let conn = Rc::clone(&this.0);
                drop(this);
                let code = code.unwrap_or(close_code::NORMAL);
                let reason = reason.unwrap_or_default();
                if !close_code::is_sendable(code) {
                    return Err(mlua::Error::runtime(format!(
                        "close: {code} is not a close code that may be sent"
                    )));
                }
                if reason.len() > 123 {
                    return Err(mlua::Error::runtime(
                        "Control frames must not have messages longer than 125 bytes",
                    ));
                }
                if !conn.queue_close(Some((code, &reason))) {
                    return Ok((
                        None,
                        Some("close: connection is already closing".to_owned()),
                    ));
                }
                if !runtime::is_driving() {
                    let limit = conn.info.close_timeout * 2;
                    let _ = runtime::block_on("close", async {
                        tokio::time::timeout(limit, conn.wait_ended()).await
                    })?;
                }
                Ok((Some(true), None))
            },
        );
        methods.add_method("is_open", |_, this, ()| Ok(this.0.state() == State::Open));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            let c = &this.0;
            let state = match c.state() {
                State::Open => "open",
                State::Closing => "closing",
                State::Closed => "closed",
            };
            let role = match c.info.role {
                Role::Server => "from",
                Role::Client => "to",
            };
            Ok(format!(
                "ws_connection #{} {} {role} {} ({state})",
                c.id, c.info.path, c.peer
            ))
        });
    }
}
