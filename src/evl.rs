//! evl: the evluaserver runtime's connections — one [`Engine`] per upgraded socket, in a
//! process-wide registry keyed by the socket's descriptor — and the functions the Lua glue
//! (`lua/platform.lua`) drives them with (`core.links`).
//!
//! Why process-wide: evluaserver hands each frame of a connection to whichever worker
//! thread is free, in a fresh Lua state (or another cached one), and gives the glue a new
//! socket userdata every time; no Lua value survives from one frame to the next. So a
//! connection's state (decoder, fragments, close handshake, queued output) lives here,
//! behind one lock, from `ws.accept` / `ws.connect` (which replace whatever a reused
//! descriptor had) until its end. The module is linked `-z nodelete` so that the registry
//! outlives every Lua state that closes (evlua's `dlclose` in `loadlib.c`).
//!
//! evluaserver closes a socket whose peer has gone without dispatching it, so the glue is
//! not told. The registry notices by itself: each socket's identity (its inode) is noted
//! at open, and at most once a second a dispatch looks for entries whose descriptor no
//! longer holds that socket; they end (1006) and are handed to the glue ([`take_gone`]),
//! which calls their `handle_close`, as is an entry whose descriptor is opened anew.
//!
//! Output has one sender at a time: [`take_output`] hands the queued bytes to one caller
//! and refuses others until it reports [`sent`]; that caller loops until nothing is left,
//! so frames queued by several worker threads at once never interleave on the socket.

use crate::codec::{Limits, Role};
use crate::deflate::Agreement;
use crate::engine::{CloseError, Ending, Engine, Event, SendError, Settings};
use crate::topics::{self, SubscribeError, Subscriptions, DEFAULT_MAX_TOPICS, MAX_TOPIC_BYTES};
use bytes::BytesMut;
use mlua::{Lua, Table, UserDataRef, Value};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a connection is, fixed when it opens (the fields of `msg.conn`).
#[derive(Clone, Debug, Default)]
pub struct LinkInfo {
    /// The handler module serving it (`ws.echo`); for a client, its `msg_handler`.
    pub handler: Option<String>,
    pub path: String,
    /// The query of a server connection's request (`room=1`).
    pub query: Option<String>,
    pub host: String,
    pub port: u16,
    pub is_tls: bool,
    pub subprotocol: Option<String>,
}

/// One upgraded socket's connection.
pub struct Link {
    /// Serial number, so that a connection object of an ended connection never acts on
    /// a later one that reuses its descriptor.
    pub id: u64,
    pub info: LinkInfo,
    pub engine: Engine,
    /// Bytes received and not yet decoded (a partial frame waits here for the next read).
    pub input: BytesMut,
    /// One Lua state is sending this link's output right now.
    sending: bool,
    /// The socket's inode when it was opened (`None`: not a socket we can check).
    inode: Option<u64>,
    /// Whether evluaserver lets us write to the socket yet. An accepted socket is not
    /// until its Upgrade request has returned (evluaserver writes the 101 then, and dies
    /// if frames reach the socket before): it is from its first dispatch on, or as soon
    /// as the kernel has sent bytes on it since it was opened (the 101: nothing of ours
    /// goes out before), so that a member that never speaks gets what is published to it
    /// at once; where the kernel's count cannot be read, once [`WRITABLE_AFTER_UPGRADE`]
    /// has passed since it was opened.
    writable: bool,
    opened_at: Instant,
    /// The bytes the kernel had sent on the socket when it was opened (TCP_INFO; `None`:
    /// not readable), before the 101.
    sent_at_open: Option<u64>,
}

/// A connection that ended without the glue seeing it (its socket closed by evluaserver,
/// or its descriptor opened anew), whose `handle_close` is still due.
pub struct Gone {
    pub fd: i64,
    pub id: u64,
    pub role: Role,
    pub info: LinkInfo,
    pub ending: Ending,
}

struct Registry {
    links: HashMap<i64, Link>,
    gone: Vec<Gone>,
    last_sweep: Option<Instant>,
    /// Topics of every connection of the process, by (descriptor, id): evluaserver may run
    /// each frame in another Lua state, so subscriptions cannot live in Lua.
    topics: Subscriptions<(i64, u64)>,
    /// Messages published, and deliveries skipped because the subscriber's queue was full.
    published: u64,
    publish_dropped: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            links: HashMap::new(),
            gone: Vec::new(),
            last_sweep: None,
            topics: Subscriptions::new(DEFAULT_MAX_TOPICS),
            published: 0,
            publish_dropped: 0,
        }
    }
}

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(Mutex::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How long after its upgrade an accepted socket is taken to have its 101 written (by
/// evluaserver, once the upgrade's Lua returned: far sooner than this).
const WRITABLE_AFTER_UPGRADE: Duration = Duration::from_secs(1);

/// How often dispatches look for connections whose socket is gone.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The bytes the kernel has sent on the TCP socket open on `fd` (TCP_INFO's
/// tcpi_bytes_sent, Linux 4.19+), if it can say.
fn tcp_bytes_sent(fd: i64) -> Option<u64> {
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct we own.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    } == 0;
    let end_of_field = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_sent) + 8;
    (ok && len as usize >= end_of_field).then_some(info.tcpi_bytes_sent)
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The inode of the socket open on `fd`, if it is one.
fn socket_inode(fd: i64) -> Option<u64> {
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: fstat only writes into the zeroed struct we own; any descriptor is safe.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    (ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

impl Registry {
    /// Ends `link` (its transport is gone) and keeps it for `take_gone`, unless its ending
    /// was already delivered.
    fn bury(&mut self, fd: i64, mut link: Link, now: Instant) {
        self.topics.leave_all(&(fd, link.id));
        link.engine.transport_closed();
        if let Some(Event::Closed(ending)) = link.engine.poll_event(&mut link.input, || now) {
            self.gone.push(Gone {
                fd,
                id: link.id,
                role: link.engine.role(),
                info: link.info,
                ending,
            });
        }
    }

    /// Looks (at most every `SWEEP_EVERY`) for connections whose socket is gone.
    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|at| now < at + SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(now);
        let dead: Vec<i64> = self
            .links
            .iter()
            .filter(|(fd, l)| l.inode.is_some() && socket_inode(**fd) != l.inode)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in dead {
            if let Some(link) = self.links.remove(&fd) {
                self.bury(fd, link, now);
            }
        }
    }
}

/// The connections that ended unseen, for their `handle_close` (looking for more first).
pub fn take_gone(now: Instant) -> Vec<Gone> {
    let mut r = registry();
    r.sweep(now);
    std::mem::take(&mut r.gone)
}

/// Runs `f` on the link of `fd`, if there is one (the lock is held meanwhile: `f` must not
/// call back into Lua).
pub fn with<R>(fd: i64, f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    registry().links.get_mut(&fd).map(f)
}

/// Runs `f` on the link of `fd` if it is still connection `id`.
fn with_id<R>(fd: i64, id: u64, f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    with(fd, |l| (l.id == id).then(|| f(l))).flatten()
}

/// Opens the connection of `fd`; a connection a previous socket with the same descriptor
/// left is ended and reported by `take_gone`. Returns the new connection's id.
pub fn open(
    fd: i64,
    role: Role,
    info: LinkInfo,
    settings: Settings,
    deflate: Option<Agreement>,
    now: Instant,
) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut engine = Engine::new(role, settings, now);
    if let Some(agreement) = deflate {
        engine.use_deflate(agreement);
    }
    let link = Link {
        id,
        info,
        engine,
        input: BytesMut::new(),
        sending: false,
        inode: socket_inode(fd),
        writable: role == Role::Client,
        opened_at: now,
        sent_at_open: tcp_bytes_sent(fd),
    };
    let mut r = registry();
    if let Some(old) = r.links.insert(fd, link) {
        r.bury(fd, old, now);
    }
    id
}

/// Forgets the connection of `fd` if it is still connection `id`.
pub fn remove(fd: i64, id: u64) -> bool {
    let mut r = registry();
    if r.links.get(&fd).is_some_and(|l| l.id == id) {
        r.links.remove(&fd);
        r.topics.leave_all(&(fd, id));
        true
    } else {
        false
    }
}

/// How many connections the registry holds (for the specs: nothing leaks).
pub fn count() -> usize {
    registry().links.len()
}

/// The queued output of `fd` for the caller to send, unless another caller is sending it
/// or the socket cannot be written yet; `None`: nothing to send by this caller.
pub fn take_output(fd: i64) -> Option<BytesMut> {
    with(fd, |link| {
        if link.sending || !link.is_writable(fd) {
            return None;
        }
        let (mut shared, mut out) = (Vec::new(), BytesMut::new());
        link.engine.take_output(&mut shared, &mut out).then(|| {
            link.sending = true;
            if shared.is_empty() {
                return out;
            }
            let mut all: BytesMut = shared.concat().as_slice().into();
            all.extend_from_slice(&out);
            all
        })
    })
    .flatten()
}

/// Whether `fd` is an accepted connection whose 101 is not out yet (inside its upgrade):
/// its output is held, and ws.publish from its upgrade is refused.
pub fn upgrading(fd: i64) -> bool {
    with(fd, |link| !link.is_writable(fd)).unwrap_or(false)
}

impl Link {
    /// Whether the socket of this link (open on `fd`) can be written to now (see
    /// [`Link::writable`]).
    fn is_writable(&mut self, fd: i64) -> bool {
        if !self.writable {
            let answered = match (self.sent_at_open, tcp_bytes_sent(fd)) {
                (Some(before), Some(now)) => now > before,
                _ => self.opened_at.elapsed() >= WRITABLE_AFTER_UPGRADE,
            };
            self.writable = answered;
        }
        self.writable
    }
}

/// The caller of [`take_output`] is done sending; a failed send ends the transport.
pub fn sent(fd: i64, ok: bool) {
    with(fd, |link| {
        link.sending = false;
        if !ok {
            link.engine.transport_closed();
        }
    });
}

/// The settings of evluaserver connections: the standalone defaults without timers
/// (nothing runs between dispatches, so keepalive and idle timeouts cannot).
fn settings(max_message_size: Option<usize>) -> Settings {
    let max = max_message_size.unwrap_or(Limits::default().max_message_size);
    Settings {
        limits: Limits {
            max_message_size: max,
            max_frame_size: max,
        },
        ..Settings::default()
    }
}

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
            Some(if op == crate::codec::opcode::TEXT {
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

/// `true` | `nil, message`, with `SendError::ControlTooLong` raised (misuse).
fn send_result(
    r: Option<Result<(), SendError>>,
) -> mlua::Result<(Option<bool>, Option<String>, Option<&'static str>)> {
    match r.unwrap_or(Err(SendError::Closed)) {
        Ok(()) => Ok((Some(true), None, None)),
        Err(e @ SendError::ControlTooLong) => Err(mlua::Error::runtime(e.to_string())),
        Err(e) => Ok((None, Some(e.to_string()), Some(e.kind()))),
    }
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
            let deflate = f
                .get::<Option<UserDataRef<Agreement>>>("deflate")?
                .map(|a| *a);
            Ok(open(fd, role, info, settings(max), deflate, Instant::now()))
        })?,
    )?;
    // info(fd) -> {id=, role=, handler=, path=, host=, port=, is_TLS=, subprotocol=} | nil
    t.set(
        "info",
        lua.create_function(|lua, fd: i64| {
            let Some((id, role, info)) = with(fd, |l| (l.id, l.engine.role(), l.info.clone()))
            else {
                return Ok(Value::Nil);
            };
            info_table(lua, id, role, info).map(Value::Table)
        })?,
    )?;
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
    // is_open(fd, id) -> whether connection id is open (no close frame sent or received)
    t.set(
        "is_open",
        lua.create_function(|_, (fd, id): (i64, u64)| {
            Ok(with_id(fd, id, |l| l.engine.is_open()).unwrap_or(false))
        })?,
    )?;
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
    // send(fd, id, opcode, data, compress) -> true | nil, message, kind (compress: unless
    // false, compressed when permessage-deflate was agreed and the message is not small)
    t.set(
        "send",
        lua.create_function(
            |_, (fd, id, op, data, compress): (i64, u64, u8, mlua::String, Option<bool>)| {
                send_result(with_id(fd, id, |l| {
                    let compress = compress != Some(false);
                    l.engine.send(op, &data.as_bytes(), compress, Instant::now)
                }))
            },
        )?,
    )?;
    // ping(fd, id, payload) -> true | nil, message, kind (raises over 125 bytes)
    t.set(
        "ping",
        lua.create_function(|_, (fd, id, payload): (i64, u64, mlua::String)| {
            send_result(with_id(fd, id, |l| l.engine.ping(&payload.as_bytes())))
        })?,
    )?;
    // close(fd, id, code, reason) -> true | nil, "connection is already closing" (raises
    // for a code that may not be sent or a reason over 123 bytes)
    t.set(
        "close",
        lua.create_function(|_, (fd, id, code, reason): (i64, u64, u16, String)| {
            match with_id(fd, id, |l| l.engine.close(code, &reason, Instant::now())) {
                None | Some(Err(CloseError::AlreadyClosing)) => {
                    Ok((None, Some(CloseError::AlreadyClosing.to_string())))
                }
                Some(Ok(())) => Ok((Some(true), None)),
                Some(Err(e @ CloseError::NotSendable(_))) => {
                    Err(mlua::Error::runtime(format!("close: {e}")))
                }
                Some(Err(e)) => Err(mlua::Error::runtime(e.to_string())),
            }
        })?,
    )?;
    // upgraded(fd): evluaserver has dispatched the socket, so the 101 is out
    t.set(
        "upgraded",
        lua.create_function(|_, fd: i64| {
            with(fd, |l| l.writable = true);
            Ok(())
        })?,
    )?;
    // upgrading(fd) -> whether fd's 101 is not out yet (its output is held)
    t.set("upgrading", lua.create_function(|_, fd: i64| Ok(upgrading(fd)))?)?;
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
    // subscribe(fd, id, topic) -> true, first | nil, message, kind (first: the
    // connection's first topic, so the glue makes its socket findable by descriptor)
    t.set(
        "subscribe",
        lua.create_function(|_, (fd, id, topic): (i64, u64, mlua::String)| {
            let topic = topic.to_str()?;
            let mut r = registry();
            if !r
                .links
                .get(&fd)
                .is_some_and(|l| l.id == id && l.engine.is_open())
            {
                return Ok((
                    None,
                    None,
                    Some("subscribe: connection is closing".to_owned()),
                    Some("closing"),
                ));
            }
            let first = r.topics.topics_of(&(fd, id)).is_empty();
            match r.topics.subscribe(&(fd, id), &topic) {
                Ok(()) => Ok((Some(true), Some(first), None, None)),
                Err(SubscribeError::BadName) => Err(mlua::Error::runtime(format!(
                    "subscribe: a topic is 1 to {MAX_TOPIC_BYTES} bytes, got {}",
                    topic.len()
                ))),
                Err(SubscribeError::TooMany(n)) => Ok((
                    None,
                    None,
                    Some(format!(
                        "subscribe: this connection already has {n} topics (max_topics)"
                    )),
                    Some("limit"),
                )),
            }
        })?,
    )?;
    // unsubscribe(fd, id, topic) -> whether it was subscribed
    t.set(
        "unsubscribe",
        lua.create_function(|_, (fd, id, topic): (i64, u64, mlua::String)| {
            Ok(registry().topics.unsubscribe(&(fd, id), &topic.to_str()?))
        })?,
    )?;
    // topics(fd, id) -> the connection's topics
    t.set(
        "topics",
        lua.create_function(|_, (fd, id): (i64, u64)| Ok(registry().topics.topics_of(&(fd, id))))?,
    )?;
    // publish(topic, data, msg_type, exclude_fd, exclude_id) -> {fd, id, fd, id, ...}: queues
    // the message (encoded once) on every subscriber that has room; the glue then sends
    // each one's output. A subscriber whose queue is full misses it (counted).
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
                let op = topics::check_publish(&topic, msg_type.as_deref(), &data)?;
                let frame = topics::published_frame(op, &data);
                let now = Instant::now();
                let mut r = registry();
                r.published += 1;
                let keys: Vec<(i64, u64)> = r
                    .topics
                    .subscribers(&topic)
                    .filter(|k| Some(**k) != ex_fd.zip(ex_id))
                    .cloned()
                    .collect();
                let mut reached = Vec::new();
                for (fd, id) in keys {
                    let Some(link) = r.links.get_mut(&fd).filter(|l| l.id == id) else {
                        continue;
                    };
                    if link.engine.is_full() {
                        r.publish_dropped += 1;
                        continue;
                    }
                    if link.engine.send_shared(&frame, || now).is_ok() {
                        reached.push(fd);
                        reached.push(id as i64);
                    }
                }
                Ok(reached)
            },
        )?,
    )?;
    // publish_stats() -> published, dropped (process-wide)
    t.set(
        "publish_stats",
        lua.create_function(|_, ()| {
            let r = registry();
            Ok((r.published, r.publish_dropped))
        })?,
    )?;
    Ok(t)
}

/// A byte buffer for `platform.*` calls when `ffi` is not available (a `platform`
/// without ffi, such as the specs' stand-in): the glue passes `{buffer = b, offset = n}`
/// where evluaserver takes a pointer.
pub struct ByteBuffer(Vec<u8>);

impl mlua::UserData for ByteBuffer {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("len", |_, this, ()| Ok(this.0.len()));
        // write_at(offset, data) -> bytes written (bounded by the buffer)
        methods.add_method_mut(
            "write_at",
            |_, this, (offset, data): (usize, mlua::String)| {
                let data = data.as_bytes();
                let end = offset
                    .checked_add(data.len())
                    .filter(|&e| e <= this.0.len())
                    .ok_or_else(|| mlua::Error::runtime("buffer: write past the end"))?;
                this.0[offset..end].copy_from_slice(&data);
                Ok(data.len())
            },
        );
        // read_at(offset, n) -> string
        methods.add_method("read_at", |lua, this, (offset, n): (usize, usize)| {
            let end = offset
                .checked_add(n)
                .filter(|&e| e <= this.0.len())
                .ok_or_else(|| mlua::Error::runtime("buffer: read past the end"))?;
            lua.create_string(&this.0[offset..end])
        });
    }
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
            Ok(crate::client::basic_authorization(&user, &password))
        })?,
    )?;
    // client_key() -> a fresh Sec-WebSocket-Key
    core.set(
        "client_key",
        lua.create_function(|_, ()| {
            let mut r = [0u8; 16];
            crate::random::fill(&mut r);
            Ok(crate::handshake::client_key(r))
        })?,
    )?;
    // parse_url(url) -> {secure=, host=, port=, target=} | error
    core.set(
        "parse_url",
        lua.create_function(|lua, url: String| {
            let u = crate::url::parse_url(&url).map_err(mlua::Error::runtime)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, opcode};

    /// Held by the tests that end connections: `take_gone` hands out every test's.
    static GONE: Mutex<()> = Mutex::new(());

    /// Opens a server connection on `fd` now, with the default settings.
    fn open_server(fd: i64) -> u64 {
        open(
            fd,
            Role::Server,
            LinkInfo::default(),
            settings(None),
            None,
            Instant::now(),
        )
    }

    fn client_frame(op: u8, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, op, payload, Some([9, 8, 7, 6]));
        out
    }

    #[test]
    fn a_reused_descriptor_gets_a_fresh_connection_and_old_ids_are_refused() {
        let _serial = GONE.lock().unwrap_or_else(|p| p.into_inner());
        let fd = 1_000_001;
        let first = open_server(fd);
        with(fd, |l| {
            l.input
                .extend_from_slice(&client_frame(opcode::TEXT, b"half")[..3])
        });
        let second = open(
            fd,
            Role::Client,
            LinkInfo::default(),
            settings(None),
            None,
            Instant::now(),
        );
        assert_ne!(first, second);
        assert_eq!(
            with(fd, |l| (l.input.len(), l.engine.role())),
            Some((0, Role::Client))
        );
        assert!(!remove(fd, first));
        assert!(remove(fd, second));
        assert!(with(fd, |_| ()).is_none());
    }

    #[test]
    fn a_connection_whose_socket_was_closed_unseen_is_found_and_reported_once() {
        let _serial = GONE.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&a) as i64;
        let t0 = Instant::now();
        let id = open(
            fd,
            Role::Server,
            LinkInfo::default(),
            settings(None),
            None,
            t0,
        );
        drop(a); // evluaserver closed it
        drop(b);
        let gone: Vec<u64> = take_gone(t0 + SWEEP_EVERY * 2)
            .into_iter()
            .filter(|g| g.fd == fd)
            .map(|g| {
                assert_eq!(g.ending.code, 1006);
                g.id
            })
            .collect();
        assert_eq!(gone, vec![id]);
        assert!(with(fd, |_| ()).is_none());
        assert!(take_gone(t0 + SWEEP_EVERY * 4).iter().all(|g| g.fd != fd));
    }

    #[test]
    fn reopening_a_descriptor_reports_the_connection_it_held() {
        let _serial = GONE.lock().unwrap_or_else(|p| p.into_inner());
        let fd = 1_000_004;
        let t0 = Instant::now();
        let old = open(
            fd,
            Role::Server,
            LinkInfo::default(),
            settings(None),
            None,
            t0,
        );
        let new = open(
            fd,
            Role::Server,
            LinkInfo::default(),
            settings(None),
            None,
            t0,
        );
        let gone: Vec<u64> = take_gone(t0)
            .into_iter()
            .filter(|g| g.fd == fd)
            .map(|g| g.id)
            .collect();
        assert_eq!(gone, vec![old]);
        remove(fd, new);
    }

    #[test]
    fn an_accepted_socket_gives_no_output_until_it_is_upgraded() {
        let fd = 1_000_003;
        let id = open_server(fd);
        with(fd, |l| {
            l.engine
                .send(opcode::TEXT, b"hello", true, Instant::now)
                .unwrap()
        });
        assert!(take_output(fd).is_none());
        with(fd, |l| l.writable = true);
        assert!(take_output(fd).is_some());
        remove(fd, id);
    }

    #[test]
    fn an_accepted_socket_is_writable_once_the_kernel_has_sent_its_101() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let fd = i64::from(accepted.as_raw_fd());
        let id = open_server(fd);
        with(fd, |l| {
            l.engine
                .send(opcode::TEXT, b"published", true, Instant::now)
                .unwrap()
        });
        assert!(take_output(fd).is_none(), "nothing before the 101");
        assert!(upgrading(fd));
        // What evluaserver does once the upgrade's Lua has returned.
        accepted
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .unwrap();
        assert!(!upgrading(fd));
        assert!(take_output(fd).is_some(), "written to without a dispatch");
        sent(fd, true);
        remove(fd, id);
    }

    #[test]
    fn output_has_one_sender_at_a_time_and_nothing_is_lost_between_them() {
        let fd = 1_000_002;
        open_server(fd);
        with(fd, |l| l.writable = true);
        with(fd, |l| {
            l.engine
                .send(opcode::TEXT, b"one", true, Instant::now)
                .unwrap()
        });
        let first = take_output(fd).expect("first sender takes the output");
        // Another worker thread queues a frame while the first sender is still sending.
        let other = std::thread::spawn(move || {
            with(fd, |l| {
                l.engine
                    .send(opcode::TEXT, b"two", true, Instant::now)
                    .unwrap()
            });
            take_output(fd)
        });
        assert!(
            other.join().unwrap().is_none(),
            "a second sender is refused"
        );
        sent(fd, true);
        let second = take_output(fd).expect("the first sender finds the rest");
        sent(fd, true);
        assert!(take_output(fd).is_none());
        assert_eq!(&first[2..], b"one");
        assert_eq!(&second[2..], b"two");
        let id = with(fd, |l| l.id).unwrap();
        remove(fd, id);
    }
}
