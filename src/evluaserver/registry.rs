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

use bytes::BytesMut;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ws_proto::codec::{Limits, Role};
use ws_proto::deflate::Agreement;
use ws_proto::engine::{Ending, Engine, Event, Settings};
use ws_proto::subscriptions::{published_frame, SubscribeError, Subscriptions, DEFAULT_MAX_TOPICS};

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
pub(super) fn with_id<R>(fd: i64, id: u64, f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    with(fd, |l| (l.id == id).then(|| f(l))).flatten()
}

/// Opens the connection of `fd`; a connection a previous socket with the same descriptor
/// left is ended and reported by `take_gone`. Returns the new connection's id.
pub fn open(
    fd: i64,
    role: Role,
    info: LinkInfo,
    settings: Arc<Settings>,
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

/// Marks `fd` upgraded: evluaserver has dispatched the socket, so its 101 is out.
pub fn upgraded(fd: i64) {
    with(fd, |l| l.writable = true);
}

/// Why [`subscribe`] refused.
pub enum Refusal {
    /// The connection is closing (or gone).
    Closing,
    Rule(SubscribeError),
}

/// Subscribes connection `(fd, id)` to `topic`; whether it is the connection's first topic
/// (the glue then makes its socket findable by descriptor).
pub fn subscribe(fd: i64, id: u64, topic: &str) -> Result<bool, Refusal> {
    let mut r = registry();
    if !r
        .links
        .get(&fd)
        .is_some_and(|l| l.id == id && l.engine.is_open())
    {
        return Err(Refusal::Closing);
    }
    let first = r.topics.topics_of(&(fd, id)).is_empty();
    r.topics
        .subscribe(&(fd, id), topic)
        .map(|()| first)
        .map_err(Refusal::Rule)
}

/// Unsubscribes `(fd, id)` from `topic`; whether it was subscribed.
pub fn unsubscribe(fd: i64, id: u64, topic: &str) -> bool {
    registry().topics.unsubscribe(&(fd, id), topic)
}

/// The topics `(fd, id)` subscribes to.
pub fn topics_of(fd: i64, id: u64) -> Vec<String> {
    registry().topics.topics_of(&(fd, id))
}

/// Queues a message (opcode `op`, encoded once) on every subscriber of `topic` but
/// `exclude` that has room; the `(fd, id)` of each one reached, whose output the glue then
/// sends. A subscriber whose queue is full misses it (counted).
pub fn publish(topic: &str, op: u8, data: &[u8], exclude: Option<(i64, u64)>) -> Vec<(i64, u64)> {
    let frame = published_frame(op, data);
    let now = Instant::now();
    let mut r = registry();
    r.published += 1;
    let keys: Vec<(i64, u64)> = r
        .topics
        .subscribers(topic)
        .filter(|k| Some(**k) != exclude)
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
            reached.push((fd, id));
        }
    }
    reached
}

/// Messages published and deliveries dropped, process-wide.
pub fn publish_stats() -> (u64, u64) {
    let r = registry();
    (r.published, r.publish_dropped)
}

/// The settings of evluaserver connections: the standalone defaults without timers
/// (nothing runs between dispatches, so keepalive and idle timeouts cannot). Connections
/// opened with the same settings share one allocation of them (the last few kinds made).
pub fn settings(max_message_size: Option<usize>, close_timeout: Option<Duration>) -> Arc<Settings> {
    const KINDS: usize = 8;
    static MADE: Lazy<Mutex<Vec<Arc<Settings>>>> = Lazy::new(Mutex::default);
    let max = max_message_size.unwrap_or(Limits::default().max_message_size);
    let d = Settings::default();
    let wanted = Settings {
        limits: Limits {
            max_message_size: max,
            max_frame_size: max,
        },
        close_timeout: close_timeout.unwrap_or(d.close_timeout),
        ..d
    };
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = made.iter().find(|s| ***s == wanted) {
        return Arc::clone(shared);
    }
    if made.len() == KINDS {
        made.remove(0);
    }
    made.push(Arc::new(wanted));
    Arc::clone(&made[made.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws_proto::codec::{encode_frame, opcode};

    /// Held by the tests that end connections: `take_gone` hands out every test's.
    static GONE: Mutex<()> = Mutex::new(());

    #[test]
    fn connections_with_the_same_settings_share_one_allocation_of_them() {
        let a = settings(Some(1000), None);
        assert!(Arc::ptr_eq(&a, &settings(Some(1000), None)));
        let b = settings(Some(2000), None);
        assert_eq!(b.limits.max_message_size, 2000);
        assert!(!Arc::ptr_eq(&a, &b));
    }

    /// Opens a server connection on `fd` at `at`, with the default settings.
    fn open_server_at(fd: i64, at: Instant) -> u64 {
        open(
            fd,
            Role::Server,
            LinkInfo::default(),
            settings(None, None),
            None,
            at,
        )
    }

    /// Opens a server connection on `fd` now, with the default settings.
    fn open_server(fd: i64) -> u64 {
        open_server_at(fd, Instant::now())
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
            settings(None, None),
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
        let id = open_server_at(fd, t0);
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
        let old = open_server_at(fd, t0);
        let new = open_server_at(fd, t0);
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
