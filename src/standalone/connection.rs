//! connection: one open WebSocket of the standalone runtime, shared by its frame loop
//! (`session`), its bursts of writes and every Lua reference to it (`lua_connection`).
//!
//! The protocol state is the connection's [`Engine`]; this file adds what tokio needs
//! around it. Sending never waits for the socket: a frame is encoded into the engine's
//! outbox and written later, with whatever else accumulated meanwhile, in one write:
//! - on a plain socket by the loop's [`flusher`], which writes every connection that
//!   queued something during a round of the loop, each as far as its socket takes it at
//!   once;
//! - what the socket did not take, and everything on other transports (TLS), by a burst
//!   task, started when something is queued and none runs, which writes until the outbox
//!   is empty, then gives the socket's write half back and ends.
//!
//! So several sends made by one handler call cost one syscall, a connection that writes
//! costs no task of its own unless its peer reads slowly, and an idle connection has no
//! writer task (nor any write buffer). On a plain
//! server socket a large frame goes to the socket straight from the caller's bytes when
//! nothing is queued (one copy fewer); what the socket does not take is queued. The
//! outbox is bounded: above the engine's `send_buffer` a sender waits (`wait_writable`)
//! until it was drained.

use crate::standalone::flusher;
use crate::standalone::inbox::Inbox;
use crate::standalone::runtime;
use crate::standalone::stats::{bump, Stats};
use crate::standalone::transport::{
    parts_of, send_parts_now, send_vectored, shutdown_plain, Cursor, WriteSide,
};
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell, RefMut};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use ws_proto::codec::Role;
use ws_proto::engine::{CloseError, Engine, LocalClose, SendError, Settings};

/// Payloads at least this large skip the outbox when nothing is queued; smaller ones are
/// batched, since a syscall per small message costs more than copying it.
const DIRECT_WRITE_MIN: usize = 16 << 10;

/// What a connection is, fixed when it opens.
pub struct ConnectionInfo {
    /// Serial number (per server; per process for clients), for logs and `tostring`.
    pub id: u64,
    pub peer: SocketAddr,
    /// The host as named by the URL (client); `None` on the server, where it is the
    /// peer's address (see [`host`](Self::host): not kept as text per connection).
    pub host: Option<String>,
    pub port: u16,
    /// The request path the connection was opened on (`/chat`).
    pub path: String,
    /// The query of the server connection's request (`room=1` of `/chat?room=1`).
    pub query: Option<String>,
    /// The handler module serving it (`handlers.chat`); `None` for a client read with `recv`.
    pub handler_name: Option<Rc<str>>,
    pub is_tls: bool,
    /// Capacity of the inbox in bytes (connections without a handler).
    pub inbox_bytes: usize,
    /// The subprotocol agreed in the handshake, if any.
    pub subprotocol: Option<String>,
    /// The server's counters (`None` for clients).
    pub stats: Option<Rc<Stats>>,
}

impl ConnectionInfo {
    /// The host as named by the URL (client) or the peer's address (server).
    pub fn host(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(|| self.peer.ip().to_string())
    }
}

/// The shared state of one connection.
pub struct Connection {
    pub info: ConnectionInfo,
    engine: RefCell<Engine>,
    /// This connection, for the burst tasks it starts.
    me: Weak<Connection>,
    /// The write half of the transport while no burst runs; `None` while one does, and
    /// once the transport failed or was shut.
    writer: RefCell<Option<WriteSide>>,
    /// The burst running, if one does (it may hold bytes taken from the outbox and not
    /// yet written: a direct write then would overtake them); kept to stop it when the
    /// close timeout has passed.
    burst: RefCell<Option<AbortHandle>>,
    /// True while the connection waits for the [`flusher`].
    flushing: Cell<bool>,
    /// Tells waiting senders (and the ending) that a burst wrote what it had taken.
    drained: Notify,
    /// Set by the frame loop when the connection ends: the last burst shuts the socket.
    finished: Cell<bool>,
    /// Plain TCP server sockets: the write half for direct writes; `None` otherwise or
    /// once the transport failed.
    direct: RefCell<Option<Rc<OwnedWriteHalf>>>,
    /// Messages for `recv`, when no handler takes them (boxed: most connections have a
    /// handler, and an idle connection should not carry an empty inbox).
    inbox: Option<Box<Inbox>>,
    /// Set once the frame loop has ended (socket closed).
    ended: Cell<bool>,
    ended_notify: Notify,
    /// Wakes the frame loop when the engine changed outside it (a close from a handler,
    /// a failed write), so it acts on the new state and deadline.
    kick: Notify,
}

impl Connection {
    /// A connection in `role` writing through `writer`. A plain server socket is also
    /// kept for direct writes; clients mask every frame, so never write straight from the
    /// caller's bytes.
    pub fn new(
        info: ConnectionInfo,
        role: Role,
        settings: impl Into<Arc<Settings>>,
        writer: WriteSide,
    ) -> Rc<Self> {
        let inbox = info
            .handler_name
            .is_none()
            .then(|| Box::new(Inbox::new(info.inbox_bytes)));
        let direct = match &writer {
            WriteSide::Plain(socket) if role == Role::Server => Some(Rc::clone(socket)),
            _ => None,
        };
        Rc::new_cyclic(|me| Connection {
            engine: RefCell::new(Engine::new(role, settings, runtime::now())),
            me: me.clone(),
            writer: RefCell::new(Some(writer)),
            burst: RefCell::new(None),
            drained: Notify::new(),
            finished: Cell::new(false),
            direct: RefCell::new(direct),
            flushing: Cell::new(false),
            inbox,
            ended: Cell::new(false),
            ended_notify: Notify::new(),
            kick: Notify::new(),
            info,
        })
    }

    /// The engine, for the frame loop and the Lua object. Never held across an await.
    pub fn engine(&self) -> RefMut<'_, Engine> {
        self.engine.borrow_mut()
    }

    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_deref()
    }

    /// Queues a text or binary message (counted in the server's stats), compressed if
    /// permessage-deflate was agreed and `compress`, or writes it straight to the socket
    /// when it is large, goes uncompressed and nothing is queued.
    pub fn send(&self, op: u8, payload: &[u8], compress: bool) -> Result<(), SendError> {
        let mut engine = self.engine();
        let direct = self.direct.borrow();
        match direct.as_ref() {
            Some(socket)
                if payload.len() >= DIRECT_WRITE_MIN
                    && engine.queued_bytes() == 0
                    && !self.bursting()
                    && !engine.compresses(payload.len(), compress) =>
            {
                let (header, header_len) = engine.send_direct(op, payload, runtime::now)?;
                let written = send_vectored(
                    socket,
                    &[IoSlice::new(&header[..header_len]), IoSlice::new(payload)],
                )
                .unwrap_or(0);
                if written < header_len {
                    engine.queue_raw(&header[written..header_len]);
                    engine.queue_raw(payload);
                } else {
                    engine.queue_raw(&payload[written - header_len..]);
                }
            }
            _ => {
                flusher::lend(&mut engine);
                if let Err(e) = engine.send(op, payload, compress, runtime::now) {
                    engine.shed_outbox(); // nothing queued: the lent buffer is not kept
                    return Err(e);
                }
            }
        }
        drop(engine);
        if let Some(stats) = &self.info.stats {
            bump(&stats.messages_out, 1);
            bump(&stats.bytes_out, payload.len() as u64);
        }
        self.flush();
        Ok(())
    }

    /// Queues a frame published to a topic (encoded once, shared), counted like a send.
    pub fn send_shared(
        &self,
        frame: &Bytes,
        payload_len: usize,
        now: std::time::Instant,
    ) -> Result<(), SendError> {
        self.engine().send_shared(frame, || now)?;
        if let Some(stats) = &self.info.stats {
            bump(&stats.messages_out, 1);
            bump(&stats.bytes_out, payload_len as u64);
        }
        self.flush();
        Ok(())
    }

    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.engine().ping(payload)?;
        self.flush();
        Ok(())
    }

    /// Starts the closing handshake.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.engine().close(code, reason, runtime::now())?;
        self.flush();
        self.kick.notify_one();
        Ok(())
    }

    /// Waits for room in the send queue; whether it came. A peer that has not read for
    /// `send_timeout` is given up on (RFC 6455 §7.4.1: 1008 "send timeout").
    pub async fn wait_room(&self) -> bool {
        let limit = self.engine().settings().send_timeout;
        let room = match limit {
            Some(d) => crate::standalone::timers::timeout(d, self.wait_writable())
                .await
                .is_ok(),
            None => {
                self.wait_writable().await;
                true
            }
        };
        if !room {
            self.fail(LocalClose::SendTimeout);
        }
        room
    }

    /// Closes for a reason of ours (a handler error, a send timeout...), unless a close is
    /// already under way.
    pub fn fail(&self, why: LocalClose) {
        let _ = self.close(why.code(), why.reason());
    }

    /// Notes the queue's size and has what is queued written: by the loop's flusher
    /// (plain sockets) or a burst.
    pub fn flush(&self) {
        let queued = self.engine().queued_bytes();
        if queued == 0 {
            return;
        }
        if let Some(stats) = &self.info.stats {
            stats.queued(queued);
        }
        if self.flushing.get() || self.bursting() {
            return;
        }
        let plain = matches!(*self.writer.borrow(), Some(WriteSide::Plain(_)));
        match self.me.upgrade() {
            Some(me) if plain => {
                self.flushing.set(true);
                flusher::schedule(me);
            }
            _ => self.start_burst(),
        }
    }

    /// The flusher's part: writes what is queued as far as the socket takes it now; a
    /// burst writes the rest.
    pub fn write_now(&self) {
        self.flushing.set(false);
        if self.bursting() {
            return;
        }
        let writer = self.writer.borrow();
        let Some(WriteSide::Plain(socket)) = writer.as_ref() else {
            return;
        };
        let (mut chunks, mut out) = (Vec::new(), BytesMut::new());
        let mut engine = self.engine();
        if !engine.take_output(&mut chunks, &mut out) {
            return;
        }
        let parts = parts_of(&chunks, &out);
        let mut at = Cursor::default();
        let sent = send_parts_now(socket, &parts, &mut at);
        let written = parts[..at.part].iter().map(|p| p.len()).sum::<usize>() + at.offset;
        drop(parts);
        drop(writer);
        match sent {
            Ok(true) => {
                drop(engine);
                flusher::give_back(out);
                self.drained.notify_waiters();
            }
            Ok(false) => {
                engine.put_back(chunks, out, written);
                drop(engine);
                self.start_burst();
            }
            Err(_) => {
                drop(engine);
                self.write_failed();
            }
        }
    }

    /// Whether a burst task is running.
    pub fn bursting(&self) -> bool {
        self.burst.borrow().is_some()
    }

    /// Starts a burst task unless one runs (it takes what is queued meanwhile) or the
    /// write half is gone (failed or shut).
    fn start_burst(&self) {
        if self.bursting() {
            return;
        }
        let (Some(me), Some(socket)) = (self.me.upgrade(), self.writer.borrow_mut().take()) else {
            return;
        };
        *self.burst.borrow_mut() = Some(runtime::spawn(me.write_burst(socket)));
    }

    /// A write failed: the transport is over for the engine; the frame loop and waiting
    /// senders are told.
    fn write_failed(&self) {
        self.engine().transport_closed();
        self.direct.borrow_mut().take();
        self.writer.borrow_mut().take();
        self.kick.notify_one();
        self.drained.notify_waiters();
    }

    /// Resolves when the engine was changed outside the frame loop.
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// Waits until the queue is back under `send_buffer` (or the connection is over).
    pub async fn wait_writable(&self) {
        loop {
            let drained = self.drained.notified();
            {
                let engine = self.engine();
                if !engine.is_full() || engine.is_finished() {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Ends the connection: what is queued is written, then the socket is shut — at once
    /// on a plain socket that takes it all, else by a burst.
    pub fn finish(&self) {
        self.finished.set(true);
        self.write_now();
        if self.bursting() {
            return; // it shuts the socket once it has written the rest
        }
        let plain = match &*self.writer.borrow() {
            Some(WriteSide::Plain(socket)) => Some(Rc::clone(socket)),
            _ => None,
        };
        match plain {
            Some(socket) => {
                self.writer.borrow_mut().take();
                shutdown_plain(&socket);
            }
            None => self.start_burst(),
        }
    }

    /// Waits until the last burst is over (see [`finish`](Self::finish)); `false` when
    /// `limit` passed first, and then stops it (the peer does not read: its socket is
    /// dropped with what was not written).
    pub async fn wait_finished(&self, limit: std::time::Duration) -> bool {
        let done = crate::standalone::timers::timeout(limit, async {
            loop {
                let drained = self.drained.notified();
                if !self.bursting() {
                    return;
                }
                drained.await;
            }
        })
        .await
        .is_ok();
        if !done {
            if let Some(burst) = self.burst.borrow_mut().take() {
                burst.abort();
            }
        }
        done
    }

    /// Marks the frame loop as over (called last by the loop).
    pub fn mark_ended(&self) {
        self.engine().transport_closed();
        self.direct.borrow_mut().take();
        self.ended.set(true);
        self.ended_notify.notify_waiters();
        self.drained.notify_waiters();
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

    /// A burst: writes what is queued until the outbox is empty, then gives the write
    /// half back — or, once the connection is [`finish`](Self::finish)ed, shuts it. A
    /// failed write ends the transport for the engine.
    async fn write_burst(self: Rc<Self>, mut socket: WriteSide) {
        let (mut shared, mut spare) = (Vec::new(), BytesMut::new());
        let mut failed = false;
        while self.engine().take_output(&mut shared, &mut spare) {
            let written = if shared.is_empty() {
                socket.write_all(&spare).await
            } else {
                socket.write_all_chunks(&shared, &spare).await
            };
            // Written: unless more is queued already, no write buffer is kept here.
            flusher::give_back(std::mem::take(&mut spare));
            shared = Vec::new();
            self.engine().shed_outbox();
            self.drained.notify_waiters();
            if !written {
                failed = true;
                break;
            }
        }
        if failed {
            self.write_failed();
        } else if self.finished.get() {
            socket.shutdown().await;
        } else {
            *self.writer.borrow_mut() = Some(socket);
        }
        self.burst.borrow_mut().take();
        self.drained.notify_waiters();
    }
}
