//! engine: one WebSocket connection between bytes and handler calls, with no I/O.
//!
//! An [`Engine`] owns everything a connection is after the opening handshake: the frame
//! decoder (fragments, UTF-8 state) in its role, the connection's state (one [`State`]),
//! a single pending-pong slot, the keepalive / idle / close deadlines, the outbound queue
//! with its byte count, and how the connection ended. It never touches a socket, a clock
//! or Lua: the driver hands it bytes that arrived (a read buffer it owns) and the time
//! `now`, drains [`Event`]s to deliver, takes the bytes to write, asks when the next
//! deadline is, and says when the transport is gone. Both runtimes drive it: `session`
//! (tokio, standalone) and `evl` (evluaserver, engines in a process-wide registry).
//! Tests run it from bytes with simulated time.
//!
//! The rules, each in one place here: a ping is answered by a pong with its payload
//! (§5.5.3), and only the newest unanswered one (so a ping flood cannot queue pongs); a
//! close is answered by a close echoing its code (§5.5.1); data after our close frame is
//! dropped (§5.5.1); a protocol violation is answered by a close frame with its code
//! (§7.4.1) and ends the connection; a text message sent must be UTF-8; a timeout is
//! reported before the close it causes, so a handler can still say goodbye.

use crate::codec::{self, close_code, opcode, Decoder, Limits, ProtocolError, Role};
use crate::deflate::{Agreement, Deflater, Inflater};
use crate::random;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The settings of one connection's life after the handshake: one struct for the
/// server's connections and the client's (both embed it in their options), each field
/// with its default and the attack it stops. The README's option tables are checked
/// against these defaults by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Message and frame size limits, checked from frame headers (1009 beyond). Default
    /// 16 MiB each. Stops 2^63-byte frame headers and endless fragments.
    pub limits: Limits,
    /// Time the peer has to answer our close frame before we give up on it. Default 5 s.
    /// Stops peers that never finish closing.
    pub close_timeout: Duration,
    /// Keepalive: a ping after this long (`None`: no keepalive). Default 30 s on the
    /// server, off on the client...
    pub ping_interval: Option<Duration>,
    /// ...and a close with 1011 "keepalive timeout" when no pong came within this.
    /// Default 10 s. Stops dead peers holding connections.
    pub pong_timeout: Duration,
    /// Close with 1000 "idle timeout" after this long without a data message either way
    /// (`None`: never, the default).
    pub idle_timeout: Option<Duration>,
    /// Queued outbound bytes above which senders wait ([`Engine::is_full`]) and the driver
    /// stops reading the peer. Default 1 MiB. Stops ping floods and peers that send but
    /// never read: no queue grows past it and one frame.
    pub send_buffer: usize,
    /// How long a sender waits for room before the connection is closed with 1008 (the
    /// driver's rule; `None`: forever). Default 30 s. Stops peers that never read.
    pub send_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            close_timeout: Duration::from_secs(5),
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            send_buffer: 1 << 20,
            send_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// The server's keepalive default (clients have none).
pub const SERVER_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How a connection ended, as `handle_close` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    /// The peer's close code; 1005 for a close frame without one; 1006 when no close
    /// frame came (dropped, timed out, or closed by us for a protocol violation).
    pub code: u16,
    pub reason: String,
    /// Whether the closing handshake completed (the peer's close frame arrived).
    pub clean: bool,
    /// The peer's protocol violation that ended it, if that is what happened.
    pub error: Option<ProtocolError>,
}

impl Ending {
    fn abnormal(reason: &str, error: Option<ProtocolError>) -> Self {
        Ending {
            code: close_code::ABNORMAL,
            reason: reason.to_owned(),
            clean: false,
            error,
        }
    }
}

/// Where the connection's life stands (RFC 6455 §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// Our close frame is queued; we read on until the peer's answers it.
    ClosingByUs,
    /// The peer's close frame came first; our answer is queued but not yet taken.
    ClosingByPeer(Ending),
    /// The connection is over: nothing more is read or accepted for sending. What is
    /// still queued (a last close frame) is written, then the transport is closed.
    Closed(Ending),
}

/// What the driver delivers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text (`opcode::TEXT`, valid UTF-8) or binary message; `compressed`:
    /// it came compressed (permessage-deflate) and `data` is what it inflated to.
    Message {
        op: u8,
        data: Bytes,
        compressed: bool,
    },
    /// A ping (its pong is already queued) ...
    Ping(Bytes),
    /// ... and a pong.
    Pong(Bytes),
    /// The idle or keepalive timeout ran out ("idle timeout", "keepalive timeout"). The
    /// close it causes (1000, 1011) is queued by the next [`Engine::poll_event`].
    TimedOut(&'static str),
    /// The connection ended; always the last event. The driver flushes what is queued,
    /// then closes the transport.
    Closed(Ending),
}

/// Why a message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A close frame has been sent or received.
    Closing,
    /// The connection is over.
    Closed,
    /// A text message that is not UTF-8.
    NotUtf8,
    /// A ping payload over 125 bytes (§5.5).
    ControlTooLong,
}

impl SendError {
    /// The stable word Lua gets as the third value of `nil, message, kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Closing => "closing",
            SendError::Closed => "closed",
            SendError::NotUtf8 | SendError::ControlTooLong => "invalid",
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closing => "connection is closing",
            SendError::Closed => "connection is closed",
            SendError::NotUtf8 => {
                "text message is not valid UTF-8 (send it with msg_type = \"BINARY\")"
            }
            SendError::ControlTooLong => {
                "Control frames must not have messages longer than 125 bytes"
            }
        })
    }
}

/// A close this end decides — every one, with its code and reason in one place. (The
/// peer's protocol errors are [`ProtocolError`]s, which carry their own codes.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalClose {
    /// A handler raised an error (1011).
    HandlerError,
    /// No pong came within `pong_timeout` of a keepalive ping (1011).
    KeepaliveTimeout,
    /// Nothing came within `idle_timeout` (1000).
    IdleTimeout,
    /// The peer did not read what we sent within `send_timeout` (1008, RFC 6455 §7.4.1).
    SendTimeout,
    /// A subscriber's queue was full at a publish, with `slow_subscriber = "close"` (1008).
    SlowSubscriber,
    /// The server is stopping (1001).
    GoingAway,
}

impl LocalClose {
    pub fn code(self) -> u16 {
        match self {
            LocalClose::HandlerError | LocalClose::KeepaliveTimeout => close_code::INTERNAL_ERROR,
            LocalClose::IdleTimeout => close_code::NORMAL,
            LocalClose::SendTimeout | LocalClose::SlowSubscriber => close_code::POLICY,
            LocalClose::GoingAway => close_code::GOING_AWAY,
        }
    }

    /// The close frame's reason, also what `handle_timeout`'s `msg.reason` says.
    pub fn reason(self) -> &'static str {
        match self {
            LocalClose::HandlerError => "handler error",
            LocalClose::KeepaliveTimeout => "keepalive timeout",
            LocalClose::IdleTimeout => "idle timeout",
            LocalClose::SendTimeout => "send timeout",
            LocalClose::SlowSubscriber => "slow subscriber",
            LocalClose::GoingAway => "server shutting down",
        }
    }
}

/// Why a close was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseError {
    /// A code that must not appear on the wire (§7.4.2): 1005, 1006, 1015, out of range.
    NotSendable(u16),
    /// The reason does not fit a control frame (123 bytes after the code).
    ReasonTooLong,
    /// A close was already sent or received.
    AlreadyClosing,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::NotSendable(code) => {
                write!(f, "{code} is not a close code that may be sent")
            }
            CloseError::ReasonTooLong => {
                f.write_str("Control frames must not have messages longer than 125 bytes")
            }
            CloseError::AlreadyClosing => f.write_str("connection is already closing"),
        }
    }
}

/// The engine's deadlines, one slot per kind (a timer table, as quinn-proto keeps one).
#[derive(Clone, Copy)]
enum Timer {
    /// When to send the next keepalive ping.
    Ping = 0,
    /// When the pong to our keepalive ping is overdue.
    Pong = 1,
    /// When the connection has been without data messages for `idle_timeout`.
    Idle = 2,
    /// When the peer has had `close_timeout` to answer our close frame.
    Close = 3,
}

#[derive(Default)]
struct Timers([Option<Instant>; 4]);

impl Timers {
    fn set(&mut self, t: Timer, at: Instant) {
        self.0[t as usize] = Some(at);
    }
    fn stop(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }
    fn expired(&self, t: Timer, now: Instant) -> bool {
        self.0[t as usize].is_some_and(|at| at <= now)
    }
    fn is_set(&self, t: Timer) -> bool {
        self.0[t as usize].is_some()
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    fn clear(&mut self) {
        self.0 = [None; 4];
    }
}

/// The keepalive ping's payload.
const KEEPALIVE: &[u8] = b"keepalive";

/// One connection's protocol state. See the module documentation.
pub struct Engine {
    role: Role,
    /// Shared by every connection of a server (one allocation, not one per connection).
    settings: Arc<Settings>,
    decoder: Decoder,
    state: State,
    /// Encoded frames not yet taken by the driver (after those in `shared`).
    outbox: BytesMut,
    /// Frames encoded once for many connections (published to a topic), in order with
    /// what was encoded here before them: the bytes are shared, not copied.
    shared: VecDeque<Bytes>,
    /// Bytes in `shared`.
    shared_len: usize,
    /// The payload of the newest ping not yet answered: one slot, so a flood of pings
    /// from a peer that does not read costs one pong.
    pending_pong: Option<Bytes>,
    timers: Timers,
    /// A timeout found by `handle_timeout`, reported by the next `poll_event`...
    timed_out: Option<LocalClose>,
    /// ... whose close the `poll_event` after it queues.
    close_due: Option<LocalClose>,
    /// The ending has not been reported as [`Event::Closed`] yet.
    unreported: bool,
    /// Our permessage-deflate compressor, when the extension was agreed (boxed: most
    /// connections have none, and an idle one should not carry its room).
    deflater: Option<Box<Deflater>>,
}

impl Engine {
    /// An open connection in `role`, its deadlines counted from `now`.
    pub fn new(role: Role, settings: impl Into<Arc<Settings>>, now: Instant) -> Self {
        let settings = settings.into();
        let mut timers = Timers::default();
        if let Some(every) = settings.ping_interval {
            timers.set(Timer::Ping, now + every);
        }
        if let Some(idle) = settings.idle_timeout {
            timers.set(Timer::Idle, now + idle);
        }
        Engine {
            role,
            decoder: Decoder::new(role, settings.limits),
            settings,
            state: State::Open,
            outbox: BytesMut::new(),
            shared: VecDeque::new(),
            shared_len: 0,
            pending_pong: None,
            timers,
            timed_out: None,
            close_due: None,
            unreported: false,
            deflater: None,
        }
    }

    /// Speaks permessage-deflate from now on, as agreed in the handshake: compressed
    /// messages are accepted and inflated, messages from `threshold` bytes up compressed.
    pub fn use_deflate(&mut self, agreement: Agreement) {
        self.decoder.set_inflater(Inflater::new(agreement));
        self.deflater = Some(Box::new(Deflater::new(agreement)));
    }

    /// Whether permessage-deflate was agreed, and whether its compressor and inflater have
    /// been made yet (they are made on first use).
    pub fn deflate_state(&self) -> Option<(bool, bool)> {
        let d = self.deflater.as_ref()?;
        Some((d.is_allocated(), self.decoder.inflater_allocated()))
    }

    /// The most bytes a compressed message from the peer has inflated to (the one refused
    /// for passing `max_message_size` included).
    pub fn max_inflated(&self) -> usize {
        self.decoder.max_inflated()
    }

    /// Whether a message of `len` bytes would go out compressed.
    pub fn compresses(&self, len: usize, wanted: bool) -> bool {
        self.deflater
            .as_ref()
            .is_some_and(|d| d.applies(len, wanted))
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is over for the driver: flush what is queued and close the
    /// transport (the closing handshake is done or abandoned).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::ClosingByPeer(_) | State::Closed(_))
    }

    /// How many bytes the read buffer should hold before the next frame can be decoded.
    pub fn bytes_wanted(&self) -> usize {
        self.decoder.bytes_wanted()
    }

    /// The next event from the bytes in `input` (consumed as frames are decoded), or a
    /// pending report (a timeout, the ending). `None`: nothing until more bytes or time.
    /// `now` is asked only when the time matters (an idle timeout to move, a close).
    pub fn poll_event(&mut self, input: &mut BytesMut, now: impl Fn() -> Instant) -> Option<Event> {
        if let Some(due) = self.timed_out.take() {
            self.close_due = Some(due);
            return Some(Event::TimedOut(due.reason()));
        }
        if let Some(why) = self.close_due.take() {
            self.fail(why, now());
        }
        loop {
            if let Some(ending) = self.take_report() {
                return Some(Event::Closed(ending));
            }
            if !matches!(self.state, State::Open | State::ClosingByUs) {
                return None;
            }
            let frame = match self.decoder.decode(input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => {
                    self.violated(e);
                    continue;
                }
            };
            let (op, data) = match frame {
                codec::Event::Text(data) => (opcode::TEXT, data),
                codec::Event::Binary(data) => (opcode::BINARY, data),
                codec::Event::Ping(data) => {
                    if self.is_open() {
                        // The pong of an earlier ping goes out too while the queue has
                        // room; past `send_buffer` only the newest is kept (§5.5.3).
                        if let Some(earlier) = self.pending_pong.take() {
                            if !self.is_full() {
                                self.encode_frame(opcode::PONG, &earlier);
                            }
                        }
                        self.pending_pong = Some(data.clone());
                    }
                    return Some(Event::Ping(data));
                }
                codec::Event::Pong(data) => {
                    self.timers.stop(Timer::Pong);
                    return Some(Event::Pong(data));
                }
                codec::Event::Close(status) => {
                    self.peer_closed(status);
                    continue;
                }
            };
            // After our close frame, data is read but not delivered (§5.5.1: we are done).
            if self.is_open() {
                self.touch(&now);
                let compressed = self.decoder.last_compressed();
                return Some(Event::Message {
                    op,
                    data,
                    compressed,
                });
            }
        }
    }

    /// The peer's close frame: answered with its code (a close without a code with one
    /// without) unless it answers ours; either way the closing handshake is complete.
    fn peer_closed(&mut self, status: Option<(u16, String)>) {
        let echo = status.as_ref().map(|(code, _)| (*code, ""));
        let (code, reason) = status.unwrap_or((close_code::NO_STATUS, String::new()));
        let ending = Ending {
            code,
            reason,
            clean: true,
            error: None,
        };
        if self.is_open() {
            self.queue_close_frame(echo);
            self.state = State::ClosingByPeer(ending);
            self.timers.clear();
            self.pending_pong = None;
            self.unreported = true;
        } else {
            self.end(ending);
        }
    }

    /// Notes a data message either way now (for the idle timeout); the clock is read
    /// only when there is an idle timeout.
    fn touch(&mut self, now: impl FnOnce() -> Instant) {
        if let Some(idle) = self.settings.idle_timeout {
            self.timers.set(Timer::Idle, now() + idle);
        }
    }

    /// Checks that a message may be sent now; a text message must be UTF-8.
    fn check_send(&self, op: u8, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if op == opcode::TEXT && std::str::from_utf8(payload).is_err() {
            return Err(SendError::NotUtf8);
        }
        Ok(())
    }

    /// Checks that anything may be sent now (no close frame either way yet).
    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::ClosingByUs | State::ClosingByPeer(_) => Err(SendError::Closing),
            State::Closed(_) => Err(SendError::Closed),
        }
    }

    /// Queues a text (`opcode::TEXT`) or binary message, compressed when permessage-deflate
    /// was agreed, it is not below the threshold and `compress` (the sender's wish) is set.
    pub fn send(
        &mut self,
        op: u8,
        payload: &[u8],
        compress: bool,
        now: impl FnOnce() -> Instant,
    ) -> Result<(), SendError> {
        self.check_send(op, payload)?;
        self.touch(now);
        self.encode_message(op, payload, compress);
        Ok(())
    }

    /// For a driver that writes a large message straight from the caller's bytes (server
    /// role only: client frames are masked): checks and accounts the message like
    /// [`send`](Self::send) and returns its frame header. What the socket does not take
    /// goes to [`queue_raw`](Self::queue_raw), header remainder first.
    pub fn send_direct(
        &mut self,
        op: u8,
        payload: &[u8],
        now: impl FnOnce() -> Instant,
    ) -> Result<([u8; codec::MAX_HEADER_LEN], usize), SendError> {
        debug_assert_eq!(self.role, Role::Server, "client frames are masked");
        self.check_send(op, payload)?;
        self.touch(now);
        let mut header = [0u8; codec::MAX_HEADER_LEN];
        let len = codec::encode_header(&mut header, true, op, payload.len(), None);
        Ok((header, len))
    }

    /// Queues a whole frame encoded once for many server connections (a message
    /// published to a topic), sharing its bytes. The publisher checked the message (UTF-8
    /// for text) and encoded it unmasked: server role only.
    pub fn send_shared(
        &mut self,
        frame: &Bytes,
        now: impl FnOnce() -> Instant,
    ) -> Result<(), SendError> {
        debug_assert_eq!(self.role, Role::Server, "client frames are masked");
        self.check_open()?;
        self.touch(now);
        if let Some(pong) = self.pending_pong.take() {
            self.encode_frame(opcode::PONG, &pong);
        }
        if !self.outbox.is_empty() {
            let before = self.outbox.split().freeze();
            self.shared_len += before.len();
            self.shared.push_back(before);
        }
        self.shared_len += frame.len();
        self.shared.push_back(frame.clone());
        Ok(())
    }

    /// Queues bytes of a frame begun with [`send_direct`](Self::send_direct).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
    }

    /// Queues a ping (payload up to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong);
        }
        self.check_send(opcode::PING, payload)?;
        self.encode(opcode::PING, payload);
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) -> Result<(), CloseError> {
        if !close_code::is_sendable(code) {
            return Err(CloseError::NotSendable(code));
        }
        if reason.len() > 123 {
            return Err(CloseError::ReasonTooLong);
        }
        if !self.is_open() {
            return Err(CloseError::AlreadyClosing);
        }
        self.queue_close_frame(Some((code, reason)));
        self.state = State::ClosingByUs;
        self.pending_pong = None;
        self.timers.clear();
        self.timers
            .set(Timer::Close, now + self.settings.close_timeout);
        Ok(())
    }

    /// The transport is gone (end of stream, a read or write error, or closed by the
    /// driver after the ending): nothing more can be written.
    pub fn transport_closed(&mut self) {
        self.outbox.clear();
        self.shared.clear();
        self.shared_len = 0;
        self.pending_pong = None;
        match &self.state {
            State::Open | State::ClosingByUs => self.end(Ending::abnormal(
                "connection dropped without a close frame",
                None,
            )),
            State::ClosingByPeer(e) => {
                self.state = State::Closed(e.clone());
                self.timers.clear();
            }
            State::Closed(_) => {}
        }
    }

    /// Bytes queued for the transport, the pending pong included.
    pub fn queued_bytes(&self) -> usize {
        // (the pong counted with the longest header a 125-byte control frame can have)
        self.outbox.len() + self.shared_len + self.pending_pong.as_ref().map_or(0, |p| p.len() + 6)
    }

    /// Whether more than `send_buffer` bytes are queued: senders should wait.
    pub fn is_full(&self) -> bool {
        self.queued_bytes() > self.settings.send_buffer
    }

    /// Moves everything queued to the driver: shared frames onto `chunks`, then the rest
    /// into `out` (swapping buffers, so both are reused); the driver writes `chunks`
    /// first. False when nothing is queued. Once our answer to the peer's close is taken,
    /// the connection is closed.
    pub fn take_output(&mut self, chunks: &mut Vec<Bytes>, out: &mut BytesMut) -> bool {
        if let Some(payload) = self.pending_pong.take() {
            self.encode_frame(opcode::PONG, &payload);
        }
        if self.outbox.is_empty() && self.shared.is_empty() {
            return false;
        }
        chunks.extend(self.shared.drain(..));
        self.shared_len = 0;
        out.clear();
        std::mem::swap(&mut self.outbox, out);
        if let State::ClosingByPeer(e) = &self.state {
            self.state = State::Closed(e.clone());
        }
        true
    }

    /// Gives back what the driver took ([`take_output`](Self::take_output): `chunks`,
    /// then `out`) of which only the first `written` bytes went out: the rest is queued
    /// again, ahead of anything queued since.
    pub fn put_back(&mut self, chunks: Vec<Bytes>, mut out: BytesMut, mut written: usize) {
        let mut rest = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            if written >= chunk.len() {
                written -= chunk.len();
            } else {
                rest.push(chunk.slice(written..));
                written = 0;
            }
        }
        for chunk in rest.into_iter().rev() {
            self.shared_len += chunk.len();
            self.shared.push_front(chunk);
        }
        out.advance(written);
        out.extend_from_slice(&self.outbox);
        self.outbox = out;
    }

    /// Bytes of memory the outbox holds (0 while nothing waits to be written).
    pub fn outbox_capacity(&self) -> usize {
        self.outbox.capacity()
    }

    /// Gives the outbox's buffer back when nothing is queued in it, so that a connection
    /// holds a write buffer only while it has something to write.
    pub fn shed_outbox(&mut self) {
        if self.outbox.is_empty() && self.outbox.capacity() > 0 {
            self.outbox = BytesMut::new();
        }
    }

    /// The next deadline, if any: when [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Starts the closing handshake for a reason of ours (nothing if it is already
    /// closing).
    pub fn fail(&mut self, why: LocalClose, now: Instant) {
        let _ = self.close(why.code(), why.reason(), now);
    }

    /// Acts on the deadlines that have passed at `now`: a keepalive ping, the keepalive
    /// or idle timeout (reported, then closed by the next `poll_event`), or giving up on
    /// the peer's answer to our close (the connection ends).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::Close, now) {
            self.end(Ending::abnormal("no close frame in answer to ours", None));
            return;
        }
        if !self.is_open() || self.timed_out.is_some() || self.close_due.is_some() {
            return;
        }
        if self.timers.expired(Timer::Pong, now) {
            self.timers.clear();
            self.timed_out = Some(LocalClose::KeepaliveTimeout);
        } else if self.timers.expired(Timer::Idle, now) {
            self.timers.clear();
            self.timed_out = Some(LocalClose::IdleTimeout);
        } else if self.timers.expired(Timer::Ping, now) {
            let every = self.settings.ping_interval.unwrap_or_default();
            self.timers.set(Timer::Ping, now + every);
            // One keepalive ping in flight at a time.
            if !self.timers.is_set(Timer::Pong) {
                self.encode(opcode::PING, KEEPALIVE);
                self.timers
                    .set(Timer::Pong, now + self.settings.pong_timeout);
            }
        }
    }

    fn take_report(&mut self) -> Option<Ending> {
        if !self.unreported {
            return None;
        }
        self.unreported = false;
        match &self.state {
            State::ClosingByPeer(e) | State::Closed(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// Ends the connection for the peer's protocol violation: a close frame with the
    /// violation's code (unless ours was already sent), then no more reading.
    fn violated(&mut self, e: ProtocolError) {
        if self.is_open() {
            self.queue_close_frame(Some((e.close_code, e.reason)));
        }
        self.end(Ending::abnormal(e.reason, Some(e)));
    }

    fn end(&mut self, ending: Ending) {
        self.state = State::Closed(ending);
        self.timers.clear();
        self.pending_pong = None;
        self.unreported = true;
    }

    fn queue_close_frame(&mut self, status: Option<(u16, &str)>) {
        let payload = status
            .map(|(code, reason)| codec::close_payload(code, reason))
            .unwrap_or_default();
        self.encode(opcode::CLOSE, &payload);
    }

    /// Encodes one final frame into the outbox: masked with a fresh mask from a client,
    /// never from a server (§5.1, §5.3). A pending pong goes first: it answers a ping that came before whatever this is.
    fn encode(&mut self, op: u8, payload: &[u8]) {
        self.encode_message(op, payload, false);
    }

    /// [`encode`](Self::encode), compressing the payload when `compress` and a compressor
    /// (permessage-deflate) takes it.
    fn encode_message(&mut self, op: u8, payload: &[u8], compress: bool) {
        if let Some(pong) = self.pending_pong.take() {
            self.encode_frame(opcode::PONG, &pong);
        }
        let mask = (self.role == Role::Client).then(random::mask);
        match self.deflater.as_mut() {
            Some(d) if d.applies(payload.len(), compress) => {
                codec::encode_compressed_frame(&mut self.outbox, op, d.compress(payload), mask);
                d.trim();
            }
            _ => codec::encode_frame(&mut self.outbox, true, op, payload, mask),
        }
    }

    fn encode_frame(&mut self, op: u8, payload: &[u8]) {
        let mask = (self.role == Role::Client).then(random::mask);
        codec::encode_frame(&mut self.outbox, true, op, payload, mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;

    const SECOND: Duration = Duration::from_secs(1);

    /// A frame as a client sends it (masked).
    fn from_client(fin: bool, op: u8, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(&mut out, fin, op, payload, Some([1, 2, 3, 4]));
        out
    }

    fn server(settings: Settings, now: Instant) -> Engine {
        Engine::new(Role::Server, settings, now)
    }

    /// Every event `input` yields at `now`.
    fn events(e: &mut Engine, input: &mut BytesMut, now: Instant) -> Vec<Event> {
        std::iter::from_fn(|| e.poll_event(input, || now)).collect()
    }

    /// The frames the engine has queued, as its peer decodes them.
    fn written(e: &mut Engine) -> Vec<codec::Event> {
        let (mut chunks, mut tail) = (Vec::new(), BytesMut::new());
        if !e.take_output(&mut chunks, &mut tail) {
            return Vec::new();
        }
        let mut out: BytesMut = chunks.concat().as_slice().into();
        out.extend_from_slice(&tail);
        let peer_role = match e.role() {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let mut peer = Decoder::new(peer_role, Limits::default());
        std::iter::from_fn(|| peer.decode(&mut out).expect("engine output decodes")).collect()
    }

    fn text(s: &str) -> Event {
        Event::Message {
            op: opcode::TEXT,
            data: Bytes::copy_from_slice(s.as_bytes()),
            compressed: false,
        }
    }

    #[test]
    fn messages_split_across_reads_and_fragments_are_delivered_whole() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut wire = from_client(false, opcode::TEXT, "héllo ".as_bytes());
        wire.extend_from_slice(&from_client(true, opcode::CONTINUATION, b"world"));
        let mut input = BytesMut::new();
        for chunk in wire.chunks(3) {
            input.extend_from_slice(chunk);
            let got = events(&mut e, &mut input, t0);
            if !got.is_empty() {
                assert_eq!(got, vec![text("héllo world")]);
                assert!(input.is_empty());
                return;
            }
        }
        panic!("the message was never delivered");
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut input = from_client(true, opcode::PING, b"are you there");
        let got = events(&mut e, &mut input, t0);
        assert_eq!(got, vec![Event::Ping(Bytes::from_static(b"are you there"))]);
        assert_eq!(
            written(&mut e),
            vec![codec::Event::Pong(Bytes::from_static(b"are you there"))]
        );
    }

    #[test]
    fn a_pong_goes_out_before_what_is_sent_after_its_ping() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut input = from_client(true, opcode::PING, b"p");
        events(&mut e, &mut input, t0);
        e.send(opcode::TEXT, b"reply", true, || t0).unwrap();
        assert_eq!(
            written(&mut e),
            vec![
                codec::Event::Pong(Bytes::from_static(b"p")),
                codec::Event::Text(Bytes::from_static(b"reply"))
            ]
        );
    }

    #[test]
    fn pings_read_together_each_get_their_pong_in_order() {
        // Autobahn 2.10: ten pings in one read, ten pongs.
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut input = BytesMut::new();
        for i in 0..10 {
            input.extend_from_slice(&from_client(
                true,
                opcode::PING,
                format!("payload-{i}").as_bytes(),
            ));
        }
        assert_eq!(events(&mut e, &mut input, t0).len(), 10);
        let pongs: Vec<codec::Event> = (0..10)
            .map(|i| codec::Event::Pong(Bytes::from(format!("payload-{i}"))))
            .collect();
        assert_eq!(written(&mut e), pongs);
    }

    #[test]
    fn a_ping_flood_from_a_peer_that_never_reads_queues_at_most_send_buffer_and_one_pong() {
        let t0 = Instant::now();
        let send_buffer = 4096;
        let mut e = server(
            Settings {
                send_buffer,
                ..Settings::default()
            },
            t0,
        );
        let mut input = BytesMut::new();
        for i in 0..10_000u32 {
            input.extend_from_slice(&from_client(true, opcode::PING, &[7u8; 125]));
            if i == 9_999 {
                input.extend_from_slice(&from_client(true, opcode::PING, b"last"));
            }
        }
        let pings = events(&mut e, &mut input, t0).len();
        assert_eq!(pings, 10_001);
        let pong = 125 + 6;
        assert!(
            e.queued_bytes() <= send_buffer + 2 * pong,
            "queued {}",
            e.queued_bytes()
        );
        let out = written(&mut e);
        assert_eq!(
            out.last(),
            Some(&codec::Event::Pong(Bytes::from_static(b"last")))
        );
        assert!(out.len() < 40, "{} pongs", out.len());
    }

    #[test]
    fn the_peers_close_is_echoed_with_its_code_and_ends_the_connection_cleanly() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut input = from_client(true, opcode::CLOSE, &codec::close_payload(4321, "bye"));
        let ending = Ending {
            code: 4321,
            reason: "bye".into(),
            clean: true,
            error: None,
        };
        assert_eq!(
            events(&mut e, &mut input, t0),
            vec![Event::Closed(ending.clone())]
        );
        assert_eq!(e.state(), &State::ClosingByPeer(ending.clone()));
        assert!(e.is_finished());
        assert_eq!(
            e.send(opcode::TEXT, b"late", true, || t0),
            Err(SendError::Closing)
        );
        assert_eq!(
            written(&mut e),
            vec![codec::Event::Close(Some((4321, String::new())))]
        );
        assert_eq!(e.state(), &State::Closed(ending));
        assert_eq!(
            e.send(opcode::TEXT, b"later", true, || t0),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn a_close_without_a_code_is_answered_without_one_and_reported_as_1005() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut input = from_client(true, opcode::CLOSE, b"");
        let got = events(&mut e, &mut input, t0);
        assert!(matches!(
            &got[..],
            [Event::Closed(Ending {
                code: 1005,
                clean: true,
                ..
            })]
        ));
        assert_eq!(written(&mut e), vec![codec::Event::Close(None)]);
    }

    #[test]
    fn our_close_is_answered_by_the_peer_and_not_echoed_again() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        e.close(1000, "done", t0).unwrap();
        assert_eq!(e.state(), &State::ClosingByUs);
        assert_eq!(e.close(1000, "", t0), Err(CloseError::AlreadyClosing));
        assert_eq!(
            written(&mut e),
            vec![codec::Event::Close(Some((1000, "done".into())))]
        );
        // Data the peer sent before it saw our close is not delivered.
        let mut input = from_client(true, opcode::TEXT, b"in flight");
        input.extend_from_slice(&from_client(
            true,
            opcode::CLOSE,
            &codec::close_payload(1000, ""),
        ));
        let got = events(&mut e, &mut input, t0);
        assert!(matches!(
            &got[..],
            [Event::Closed(Ending {
                code: 1000,
                clean: true,
                ..
            })]
        ));
        assert_eq!(written(&mut e), vec![]);
        assert!(e.is_finished());
    }

    #[test]
    fn a_peer_that_never_answers_our_close_is_given_up_on_after_close_timeout() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        e.close(1001, "going away", t0).unwrap();
        assert_eq!(e.poll_timeout(), Some(t0 + 5 * SECOND));
        e.handle_timeout(t0 + 4 * SECOND);
        assert_eq!(e.state(), &State::ClosingByUs);
        e.handle_timeout(t0 + 5 * SECOND);
        let got = events(&mut e, &mut BytesMut::new(), t0 + 5 * SECOND);
        assert_eq!(
            got,
            vec![Event::Closed(Ending::abnormal(
                "no close frame in answer to ours",
                None
            ))]
        );
    }

    #[test]
    fn invalid_close_codes_and_long_reasons_are_refused() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        for code in [1005, 1006, 1015, 999, 5000] {
            assert_eq!(e.close(code, "", t0), Err(CloseError::NotSendable(code)));
        }
        assert_eq!(
            e.close(1000, &"x".repeat(124), t0),
            Err(CloseError::ReasonTooLong)
        );
        assert!(e.is_open());
    }

    #[test]
    fn a_protocol_violation_is_answered_with_its_close_code_and_ends_the_connection() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let mut unmasked = BytesMut::new();
        encode_frame(&mut unmasked, true, opcode::TEXT, b"x", None);
        let got = events(&mut e, &mut unmasked, t0);
        let [Event::Closed(ending)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!((ending.code, ending.clean), (1006, false));
        assert_eq!(ending.error.as_ref().map(|e| e.close_code), Some(1002));
        assert_eq!(
            written(&mut e),
            vec![codec::Event::Close(Some((
                1002,
                "client frame is not masked".into()
            )))]
        );
        assert_eq!(
            e.send(opcode::TEXT, b"x", true, || t0),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn keepalive_pings_after_the_interval_and_times_out_without_a_pong() {
        let t0 = Instant::now();
        let settings = Settings {
            ping_interval: Some(30 * SECOND),
            pong_timeout: 10 * SECOND,
            ..Settings::default()
        };
        let mut e = server(settings, t0);
        assert_eq!(e.poll_timeout(), Some(t0 + 30 * SECOND));
        e.handle_timeout(t0 + 30 * SECOND);
        assert_eq!(
            written(&mut e),
            vec![codec::Event::Ping(Bytes::from_static(KEEPALIVE))]
        );
        // A pong in time keeps the connection; the next ping comes an interval later.
        let mut input = from_client(true, opcode::PONG, KEEPALIVE);
        events(&mut e, &mut input, t0 + 31 * SECOND);
        e.handle_timeout(t0 + 45 * SECOND);
        assert!(e.is_open());
        assert_eq!(e.poll_timeout(), Some(t0 + 60 * SECOND));
        e.handle_timeout(t0 + 60 * SECOND);
        written(&mut e);
        // No pong this time: reported, then the handler may still send, then the close.
        e.handle_timeout(t0 + 70 * SECOND);
        let mut none = BytesMut::new();
        assert_eq!(
            e.poll_event(&mut none, || t0 + 70 * SECOND),
            Some(Event::TimedOut("keepalive timeout"))
        );
        e.send(opcode::TEXT, b"goodbye", true, || t0 + 70 * SECOND)
            .unwrap();
        assert_eq!(e.poll_event(&mut none, || t0 + 70 * SECOND), None);
        assert_eq!(
            written(&mut e),
            vec![
                codec::Event::Text(Bytes::from_static(b"goodbye")),
                codec::Event::Close(Some((1011, "keepalive timeout".into())))
            ]
        );
    }

    #[test]
    fn idle_timeout_counts_from_the_last_data_message_either_way() {
        let t0 = Instant::now();
        let settings = Settings {
            idle_timeout: Some(10 * SECOND),
            ..Settings::default()
        };
        let mut e = server(settings, t0);
        e.send(opcode::TEXT, b"out", true, || t0 + 5 * SECOND)
            .unwrap();
        e.handle_timeout(t0 + 10 * SECOND);
        let mut input = from_client(true, opcode::TEXT, b"in");
        assert_eq!(
            events(&mut e, &mut input, t0 + 12 * SECOND),
            vec![text("in")]
        );
        e.handle_timeout(t0 + 21 * SECOND);
        assert!(e.is_open());
        assert_eq!(e.poll_timeout(), Some(t0 + 22 * SECOND));
        e.handle_timeout(t0 + 22 * SECOND);
        let got = events(&mut e, &mut BytesMut::new(), t0 + 22 * SECOND);
        assert_eq!(got, vec![Event::TimedOut("idle timeout")]);
        assert_eq!(e.state(), &State::ClosingByUs);
    }

    #[test]
    fn a_dropped_transport_ends_the_connection_with_1006() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        e.send(opcode::BINARY, &[0; 100], true, || t0).unwrap();
        e.transport_closed();
        assert_eq!(e.queued_bytes(), 0);
        let got = events(&mut e, &mut BytesMut::new(), t0);
        assert_eq!(
            got,
            vec![Event::Closed(Ending::abnormal(
                "connection dropped without a close frame",
                None
            ))]
        );
        assert_eq!(events(&mut e, &mut BytesMut::new(), t0), vec![]);
    }

    #[test]
    fn text_must_be_utf8_and_pings_at_most_125_bytes() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        assert_eq!(
            e.send(opcode::TEXT, b"\xff", true, || t0),
            Err(SendError::NotUtf8)
        );
        assert!(e.send(opcode::BINARY, b"\xff", true, || t0).is_ok());
        assert_eq!(e.ping(&[0; 126]), Err(SendError::ControlTooLong));
        assert!(e.ping(&[0; 125]).is_ok());
    }

    #[test]
    fn shared_frames_keep_their_place_among_the_connections_own_frames() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        e.send(opcode::TEXT, b"before", true, || t0).unwrap();
        let mut published = BytesMut::new();
        encode_frame(&mut published, true, opcode::TEXT, b"to everyone", None);
        let published = published.freeze();
        e.send_shared(&published, || t0).unwrap();
        e.send(opcode::TEXT, b"after", true, || t0).unwrap();
        assert_eq!(e.queued_bytes(), 8 + 13 + 7);
        let (mut chunks, mut tail) = (Vec::new(), BytesMut::new());
        assert!(e.take_output(&mut chunks, &mut tail));
        assert_eq!(
            chunks[1].as_ptr(),
            published.as_ptr(),
            "the published bytes are not copied"
        );
        let mut all: BytesMut = chunks.concat().as_slice().into();
        all.extend_from_slice(&tail);
        let mut peer = Decoder::new(Role::Client, Limits::default());
        let got: Vec<_> = std::iter::from_fn(|| peer.decode(&mut all).unwrap()).collect();
        assert_eq!(
            got,
            ["before", "to everyone", "after"]
                .map(|t| codec::Event::Text(Bytes::from(t)))
                .to_vec()
        );
        e.close(1000, "", t0).unwrap();
        assert_eq!(e.send_shared(&published, || t0), Err(SendError::Closing));
    }

    #[test]
    fn output_put_back_after_a_short_write_goes_out_before_what_was_queued_since() {
        let t0 = Instant::now();
        let wire = |chunks: &[Bytes], tail: &[u8]| [chunks.concat(), tail.to_vec()].concat();
        // "one", a published "two", "three": 5 + 5 + 7 bytes, cut after each byte
        for written in 0..=17 {
            let mut e = server(Settings::default(), t0);
            e.send(opcode::TEXT, b"one", true, || t0).unwrap();
            let mut published = BytesMut::new();
            encode_frame(&mut published, true, opcode::TEXT, b"two", None);
            e.send_shared(&published.freeze(), || t0).unwrap();
            e.send(opcode::TEXT, b"three", true, || t0).unwrap();
            let (mut chunks, mut tail) = (Vec::new(), BytesMut::new());
            assert!(e.take_output(&mut chunks, &mut tail));
            let mut all = BytesMut::from(&wire(&chunks, &tail)[..written]);
            e.send(opcode::TEXT, b"four", true, || t0).unwrap();
            e.put_back(chunks, tail, written);
            assert_eq!(e.queued_bytes(), 17 - written + 6, "cut at {written}");
            let (mut chunks, mut tail) = (Vec::new(), BytesMut::new());
            assert!(e.take_output(&mut chunks, &mut tail));
            all.extend_from_slice(&wire(&chunks, &tail));
            let mut peer = Decoder::new(Role::Client, Limits::default());
            let got: Vec<_> = std::iter::from_fn(|| peer.decode(&mut all).unwrap()).collect();
            assert_eq!(
                got,
                ["one", "two", "three", "four"]
                    .map(|t| codec::Event::Text(Bytes::from(t)))
                    .to_vec(),
                "cut at {written}"
            );
        }
    }

    #[test]
    fn a_client_masks_what_it_sends_and_refuses_masked_frames() {
        let t0 = Instant::now();
        let mut e = Engine::new(Role::Client, Settings::default(), t0);
        e.send(opcode::TEXT, b"hi", true, || t0).unwrap();
        let mut out = BytesMut::new();
        assert!(e.take_output(&mut Vec::new(), &mut out));
        assert_eq!(out[1] & 0x80, 0x80, "mask bit set");
        let mut masked = from_client(true, opcode::TEXT, b"x");
        let got = events(&mut e, &mut masked, t0);
        assert!(matches!(
            &got[..],
            [Event::Closed(Ending {
                error: Some(ProtocolError {
                    close_code: 1002,
                    ..
                }),
                ..
            })]
        ));
    }

    #[test]
    fn direct_sends_are_checked_and_accounted_like_queued_ones() {
        let t0 = Instant::now();
        let mut e = server(Settings::default(), t0);
        let (header, len) = e.send_direct(opcode::BINARY, &[9; 70_000], || t0).unwrap();
        assert_eq!(&header[..len], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        e.close(1000, "", t0).unwrap();
        assert_eq!(
            e.send_direct(opcode::BINARY, b"x", || t0),
            Err(SendError::Closing)
        );
    }
}
