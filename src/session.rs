//! session: the frame loop of one open WebSocket, the same for both ends.
//!
//! Reads bytes, decodes events, answers pings and close frames, and delivers messages
//! either to a Lua handler class (server connections, and clients opened with a
//! `msg_handler`) or to the connection's inbox, where `conn:recv()` takes them. Then
//! closes: handler `handle_close`, flush, FIN, and a bounded wait for the peer.

use crate::codec::{close_code, opcode, Decoder, Event, Limits, Role};
use crate::connection::{Connection, State, WriteSide};
use crate::stats::{bump, Level, Logger, Stats};
use bytes::BytesMut;
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, Table};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

/// The handler class of one connection, its functions looked up once.
pub struct Handler {
    pub name: String,
    on_open: Option<Function>,
    on_message: Function,
    on_ping: Option<Function>,
    on_pong: Option<Function>,
    on_close: Option<Function>,
    on_timeout: Option<Function>,
}

impl Handler {
    pub fn from_table(name: String, t: &Table) -> mlua::Result<Self> {
        Ok(Handler {
            on_open: t.get("handle_open")?,
            on_message: t.get("handle_message").map_err(|_| {
                mlua::Error::runtime(format!("handler '{name}' has no handle_message function"))
            })?,
            on_ping: t.get("handle_ping")?,
            on_pong: t.get("handle_pong")?,
            on_close: t.get("handle_close")?,
            on_timeout: t.get("handle_timeout")?,
            name,
        })
    }
}

/// Where the messages of a connection go.
pub enum Delivery {
    Handler(Handler),
    /// The connection's inbox, for `recv`.
    Inbox,
}

/// Settings of the loop, from the server's or the client's options.
pub struct LoopConfig {
    pub role: Role,
    pub limits: Limits,
    /// Time the peer has to answer our close frame.
    pub close_timeout: Duration,
    /// Send a ping after this long without one (`None`: no keepalive)...
    pub ping_interval: Option<Duration>,
    /// ...and close with 1011 "keepalive timeout" when no pong came within this.
    pub pong_timeout: Duration,
    /// Close with 1000 "idle timeout" after this long without a data message either way.
    pub idle_timeout: Option<Duration>,
    pub logger: Rc<Logger>,
    /// The server's counters (`None` for clients).
    pub stats: Option<Rc<Stats>>,
}

/// When the loop must act without input: the keepalive and idle timers.
struct Liveness {
    /// When the ping we sent went out, while its pong is awaited.
    ping_sent: Option<Instant>,
    /// When the last ping went out or, without one, when the connection opened.
    last_ping: Instant,
}

impl Liveness {
    /// The next instant a timer fires, if any is configured.
    fn deadline(&self, cfg: &LoopConfig, conn: &Connection) -> Option<Instant> {
        let keepalive = cfg.ping_interval.map(|every| match self.ping_sent {
            Some(sent) => sent + cfg.pong_timeout,
            None => self.last_ping + every,
        });
        let idle = cfg
            .idle_timeout
            .map(|d| Instant::from_std(conn.last_data()) + d);
        match (keepalive, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How a connection ended, for `handle_close`: the peer's close code and reason, 1005
/// for a close frame without a code, 1006 when no close frame came.
struct Ending {
    code: u16,
    reason: String,
    /// Whether the peer's close frame arrived (the closing handshake completed).
    clean: bool,
}

impl Ending {
    fn abnormal(reason: &str) -> Self {
        Ending {
            code: close_code::ABNORMAL,
            reason: reason.to_owned(),
            clean: false,
        }
    }
}

/// One open connection as the frame loop sees it.
struct Session<'a> {
    lua: &'a Lua,
    cfg: &'a LoopConfig,
    conn: &'a Rc<Connection>,
    conn_ud: AnyUserData,
    delivery: &'a Delivery,
}

impl Session<'_> {
    /// Runs one handler function in its own coroutine. A Lua error is logged with the
    /// handler's name and closes this connection with 1011; nothing else is affected.
    async fn call(&self, name: &str, f: &Function, what: &str, arg: impl IntoLuaMulti) {
        if let Err(e) = f.call_async::<()>(arg).await {
            let c = self.conn;
            self.cfg.logger.log(
                Level::Error,
                format_args!(
                    "handler '{name}' failed in {what} on connection #{} ({}): {e}",
                    c.id, c.peer
                ),
            );
            c.queue_close(Some((close_code::INTERNAL_ERROR, "handler error")));
        }
    }

    async fn deliver(&self, op: u8, data: bytes::Bytes) -> mlua::Result<()> {
        match self.delivery {
            Delivery::Handler(h) => {
                let f = match op {
                    opcode::PING => h.on_ping.as_ref(),
                    opcode::PONG => h.on_pong.as_ref(),
                    _ => Some(&h.on_message),
                };
                if let Some(f) = f {
                    let what = match op {
                        opcode::PING => "handle_ping",
                        opcode::PONG => "handle_pong",
                        _ => "handle_message",
                    };
                    self.call(
                        &h.name,
                        f,
                        what,
                        message_table(self.lua, &self.conn_ud, op, &data)?,
                    )
                    .await;
                }
            }
            Delivery::Inbox if op == opcode::TEXT || op == opcode::BINARY => {
                if let Some(inbox) = self.conn.inbox() {
                    inbox.push(op, data).await;
                }
            }
            Delivery::Inbox => {}
        }
        Ok(())
    }

    /// Delivers one event. Returns how the connection ended once a close frame arrived.
    async fn dispatch(&self, event: Event) -> mlua::Result<Option<Ending>> {
        if let (Event::Text(data) | Event::Binary(data), Some(stats)) = (&event, &self.cfg.stats) {
            bump(&stats.messages_in, 1);
            bump(&stats.bytes_in, data.len() as u64);
        }
        if matches!(event, Event::Text(_) | Event::Binary(_)) {
            self.conn.touch();
        }
        match event {
            Event::Text(data) | Event::Binary(data) if self.conn.state() != State::Open => {
                drop(data)
            }
            Event::Text(data) => self.deliver(opcode::TEXT, data).await?,
            Event::Binary(data) => self.deliver(opcode::BINARY, data).await?,
            Event::Ping(data) => {
                self.conn.queue_pong(&data);
                self.deliver(opcode::PING, data).await?;
            }
            Event::Pong(data) => self.deliver(opcode::PONG, data).await?,
            Event::Close(status) => {
                // Echo the peer's code (§5.5.1); a close without a code is answered without one.
                self.conn
                    .queue_close(status.as_ref().map(|(code, _)| (*code, "")));
                let (code, reason) = status.unwrap_or((close_code::NO_STATUS, String::new()));
                return Ok(Some(Ending {
                    code,
                    reason,
                    clean: true,
                }));
            }
        }
        Ok(None)
    }
}

/// The frame loop of an open connection, then its closing. `conn_ud` is the Lua object
/// of `conn` that handlers see as `msg.conn`; `stop` (the server's stop signal) starts
/// the closing handshake with 1001.
#[allow(clippy::too_many_arguments)]
pub async fn run<R: AsyncRead + Unpin>(
    lua: &Lua,
    cfg: &LoopConfig,
    mut reader: R,
    writer: WriteSide,
    mut rbuf: BytesMut,
    conn: Rc<Connection>,
    conn_ud: AnyUserData,
    delivery: Delivery,
    mut stop: Option<watch::Receiver<bool>>,
) -> mlua::Result<()> {
    let mut writer_task = tokio::task::spawn_local(Rc::clone(&conn).write_loop(writer));
    let session = Session {
        lua,
        cfg,
        conn: &conn,
        conn_ud,
        delivery: &delivery,
    };
    if let Delivery::Handler(h) = &delivery {
        if let Some(f) = &h.on_open {
            session
                .call(&h.name, f, "handle_open", session.conn_ud.clone())
                .await;
        }
    }
    let mut decoder = Decoder::new(cfg.role, cfg.limits);
    let mut close_deadline: Option<Instant> = None;
    let mut read_sizer = ReadSizer::new();
    let mut liveness = Liveness {
        ping_sent: None,
        last_ping: Instant::now(),
    };
    // One timer for the close deadline and the keepalive / idle timers, kept across reads.
    let mut alarm = Box::pin(sleep_until(Instant::now()));
    let mut alarm_at: Option<Instant> = None;
    let ending = loop {
        match decoder.decode(&mut rbuf) {
            Ok(Some(event)) => {
                if matches!(event, Event::Pong(_)) {
                    liveness.ping_sent = None;
                }
                if let Some(ending) = session.dispatch(event).await? {
                    break ending;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                cfg.logger.log(
                    Level::Warn,
                    format_args!(
                        "connection #{} ({}): protocol error: {e}",
                        conn.id, conn.peer
                    ),
                );
                if let Some(stats) = &cfg.stats {
                    stats.protocol_close(e.close_code);
                }
                conn.queue_close(Some((e.close_code, e.reason)));
                break Ending::abnormal(e.reason);
            }
        }
        if conn.state() != State::Open && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + cfg.close_timeout);
        }
        let liveness_due = if conn.state() == State::Open {
            liveness.deadline(cfg, &conn)
        } else {
            None
        };
        let next = match (close_deadline, liveness_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = next {
            // Only an earlier deadline re-arms: a later one lets the alarm ring early and
            // be re-armed then, so busy connections do not churn the timer wheel.
            if alarm_at.is_none_or(|armed| t < armed) {
                alarm.as_mut().reset(t);
                alarm_at = Some(t);
            }
        }
        let offered = read_sizer.prepare(&mut rbuf, decoder.bytes_wanted());
        let stopping = async {
            match stop.as_mut() {
                Some(rx) => drop(rx.wait_for(|stopped| *stopped).await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break Ending::abnormal("connection dropped without a close frame"),
                Ok(n) => read_sizer.after_read(n, offered),
            },
            _ = stopping, if conn.state() == State::Open => {
                conn.queue_close(Some((close_code::GOING_AWAY, "server shutting down")));
            }
            // A close queued by someone else (a send timeout in another handler): go
            // round again to start the close deadline.
            _ = conn.closing(), if conn.state() == State::Open => {}
            _ = &mut alarm, if alarm_at.is_some() => {
                alarm_at = None;
                let now = Instant::now();
                if close_deadline.is_some_and(|d| d <= now) {
                    break Ending::abnormal("no close frame in answer to ours");
                }
                if conn.state() != State::Open {
                    continue;
                }
                let idle = cfg.idle_timeout.is_some_and(|d| Instant::from_std(conn.last_data()) + d <= now);
                let silent = liveness.ping_sent.is_some_and(|sent| sent + cfg.pong_timeout <= now);
                if idle || silent {
                    let (code, reason) = if silent { (close_code::INTERNAL_ERROR, "keepalive timeout") } else { (close_code::NORMAL, "idle timeout") };
                    cfg.logger.log(Level::Info, format_args!("connection #{} ({}): {reason}", conn.id, conn.peer));
                    if let Delivery::Handler(h) = &delivery {
                        if let Some(f) = &h.on_timeout {
                            let msg = message_table(lua, &session.conn_ud, opcode::CLOSE, reason.as_bytes())?;
                            msg.raw_set("reason", reason)?;
                            session.call(&h.name, f, "handle_timeout", msg).await;
                        }
                    }
                    conn.queue_close(Some((code, reason)));
                } else if liveness.ping_sent.is_none() && cfg.ping_interval.is_some_and(|every| liveness.last_ping + every <= now) {
                    conn.queue_ping(b"keepalive");
                    liveness.ping_sent = Some(now);
                    liveness.last_ping = now;
                }
            }
        }
    };
    if let Some(inbox) = conn.inbox() {
        inbox.close(ending.code, &ending.reason);
    }
    if let Delivery::Handler(h) = &delivery {
        if let Some(f) = &h.on_close {
            let msg = message_table(
                lua,
                &session.conn_ud,
                opcode::CLOSE,
                ending.reason.as_bytes(),
            )?;
            msg.raw_set("code", ending.code)?;
            msg.raw_set("reason", ending.reason.as_str())?;
            session.call(&h.name, f, "handle_close", msg).await;
        }
    }
    // Flush what is queued (our close frame) and send FIN: the server closes the TCP
    // connection first (RFC 6455 §7.1.1). When the handshake did not complete, unread
    // bytes may still arrive; read them until the peer closes too, so that our close
    // frame is not lost to a reset.
    conn.finish();
    if timeout(cfg.close_timeout, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    if !ending.clean {
        let _ = timeout(cfg.close_timeout, drain(&mut reader)).await;
    }
    conn.mark_ended();
    Ok(())
}

/// How much room each read offers. At least what the frame in progress still needs (its
/// size was checked against the limits from its header), reserved at once; beyond that
/// 4 KiB, doubling up to 256 KiB while reads fill what was offered, so that a busy
/// connection takes many frames per syscall and a quiet one holds little. A large buffer
/// is released once it is empty and traffic has slowed down again.
struct ReadSizer {
    hint: usize,
}

impl ReadSizer {
    const MIN: usize = 4 << 10;
    const MAX: usize = 256 << 10;

    fn new() -> Self {
        ReadSizer { hint: Self::MIN }
    }

    /// Makes room in `buf` for the next read; returns the room offered.
    fn prepare(&self, buf: &mut BytesMut, frame_needs: usize) -> usize {
        if buf.is_empty() && self.hint == Self::MIN && buf.capacity() > Self::MAX {
            *buf = BytesMut::new();
        }
        buf.reserve(frame_needs.saturating_sub(buf.len()).max(self.hint));
        buf.capacity() - buf.len()
    }

    fn after_read(&mut self, n: usize, offered: usize) {
        if n >= offered {
            self.hint = (self.hint * 2).min(Self::MAX);
        } else if n < self.hint / 4 {
            self.hint = (self.hint / 2).max(Self::MIN);
        }
    }
}

/// Reads and discards until end of stream.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = [0u8; 4096];
    while let Ok(n) = reader.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
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
