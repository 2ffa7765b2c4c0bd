//! workers: one server on every core, supervised. `ws.server{workers = N}` forks, right
//! after binding and before any event loop exists, a supervisor process; the supervisor
//! forks workers 2..N and replaces any that dies (as nginx's master and gunicorn's arbiter
//! do), logging its number, pid and exit status or signal, with a back-off when workers
//! keep dying. The process that called `ws.server` is worker 1 (index 0): it is the user's
//! own process, supervised by whatever started it. Every worker has its own copy of the Lua
//! state (a replacement is forked from the supervisor, a copy of the process at
//! `ws.server`, and runs `worker_init` again) and its own event loop, and accepts on the
//! one listening socket they share. Processes, not threads: a Lua state cannot be made here
//! (the module lives in the host's Lua, which owns state creation), and a process per core
//! also keeps one worker's crash from taking the others down.
//!
//! The mesh: each worker listens on an abstract Unix socket (bound before the first fork,
//! so it exists while its worker is being replaced) and connects to every other one's,
//! again after a drop. It carries what must reach the others: publishes (so a topic spans
//! every worker), each worker's counters (so `server:stats()` adds them up; a worker's
//! counters are dropped when its connection ends) and stop. On a connection: the sender's
//! index (4 bytes, big-endian), then messages `kind (1 byte) · length (4 bytes,
//! big-endian) · body`: `P` publish (`topic length (2) · opcode (1) · topic · data`), `C`
//! counters (`name=value` lines), `X` stop.

use crate::lua_api::log::{Level, Logger};
use crate::standalone::{runtime, timers};
use std::cell::Cell;
use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Messages waiting for one peer; beyond, publishes to it are dropped.
const PEER_QUEUE: usize = 10_000;
/// How often a worker sends its counters to the others.
pub const COUNTERS_EVERY: Duration = Duration::from_millis(200);
/// A worker that dies sooner than this after its start counts as crashing: the next
/// replacement waits 1 s, doubling with each crash in a row up to `RESTART_DELAY_MAX`.
const CRASH_WITHIN: Duration = Duration::from_secs(10);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// How often the supervisor looks for dead workers and due replacements.
const SUPERVISOR_TICK: Duration = Duration::from_millis(50);

/// What a worker learns from its siblings.
pub trait FromSiblings {
    /// A message published in another worker: deliver it to local subscribers.
    fn published(&self, topic: &str, op: u8, data: &[u8]);
    /// Another worker's latest counters.
    fn counters(&self, worker: usize, counters: Vec<(String, u64)>);
    /// Another worker's connection ended (it died or stopped): forget its counters.
    fn gone(&self, worker: usize);
    /// Another worker was stopped: stop too.
    fn stop(&self);
}

/// This process's place among the workers, before its event loop exists.
pub struct Forked {
    /// 0-based; worker 0 is the process that called `ws.server`.
    pub index: usize,
    pub count: usize,
    /// The name of every worker's mesh socket is this and its index.
    token: String,
    /// This worker's mesh socket.
    listener: UnixListener,
    /// Worker 0: the supervisor's process id.
    pub supervisor: Option<libc::pid_t>,
}

fn mesh_address(token: &str, index: usize) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("service_utils.WS.{token}.{index}"))
}

/// Set by SIGTERM in the supervisor.
static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOPPING.store(true, Ordering::Relaxed);
}

/// Sets `signal`'s handler (without SA_RESTART).
fn set_handler(signal: libc::c_int, handler: libc::sighandler_t) {
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Starts the supervisor, which forks workers 2..`count`; returns in every worker with
/// its place. Must run before any tokio runtime exists in the process
/// (`runtime::started()`). `limit`: how long a worker may take to stop.
pub fn fork(count: usize, logger: &Logger, limit: Duration) -> std::io::Result<Forked> {
    let mut token = [0u8; 8];
    ws_proto::random::fill(&mut token);
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let mut listeners = (0..count)
        .map(|i| UnixListener::bind_addr(&mesh_address(&token, i)?))
        .collect::<std::io::Result<Vec<_>>>()?;
    let parent = unsafe { libc::getpid() };
    // SAFETY: no other thread exists yet (no runtime): the child is a faithful copy.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // The supervisor ends with the process that started it.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
            if unsafe { libc::getppid() } != parent {
                unsafe { libc::_exit(0) };
            }
            let Some(index) = Supervisor::new(count, logger, limit).run() else {
                unsafe { libc::_exit(0) };
            };
            Ok(Forked {
                index,
                count,
                token,
                listener: listeners.swap_remove(index),
                supervisor: None,
            })
        }
        pid => Ok(Forked {
            index: 0,
            count,
            token,
            listener: listeners.swap_remove(0),
            supervisor: Some(pid),
        }),
    }
}

/// A worker the supervisor looks after (index 1..count).
struct Slot {
    pid: Option<libc::pid_t>,
    started: Instant,
    /// Crashes in a row (each within `CRASH_WITHIN` of its start).
    crashes: u32,
    /// When to start a replacement, once it has died.
    restart_at: Option<Instant>,
    /// Ended by a stop (exit status 0): not replaced.
    finished: bool,
}

struct Supervisor<'a> {
    slots: Vec<Slot>,
    logger: &'a Logger,
    limit: Duration,
    me: libc::pid_t,
}

impl<'a> Supervisor<'a> {
    fn new(count: usize, logger: &'a Logger, limit: Duration) -> Self {
        set_handler(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
        // Ctrl-C reaches the whole process group: the workers stop on it, and end, and
        // the supervisor sees them end.
        set_handler(libc::SIGINT, libc::SIG_IGN);
        let now = Instant::now();
        let slots = (1..count)
            .map(|_| Slot {
                pid: None,
                started: now,
                crashes: 0,
                restart_at: Some(now),
                finished: false,
            })
            .collect();
        Supervisor {
            slots,
            logger,
            limit,
            me: unsafe { libc::getpid() },
        }
    }

    /// Supervises until stopped or every worker has finished (`None`); returns
    /// `Some(index)` in a worker it forked.
    fn run(mut self) -> Option<usize> {
        loop {
            if STOPPING.load(Ordering::Relaxed) {
                self.stop_all();
                return None;
            }
            self.reap();
            if let Some(index) = self.start_due() {
                return Some(index);
            }
            if self.slots.iter().all(|s| s.finished) {
                return None;
            }
            std::thread::sleep(SUPERVISOR_TICK);
        }
    }

    /// Forks the replacements that are due; `Some(index)` in the child.
    fn start_due(&mut self) -> Option<usize> {
        let now = Instant::now();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.restart_at.is_none_or(|at| at > now) {
                continue;
            }
            match unsafe { libc::fork() } {
                -1 => {
                    slot.restart_at = Some(now + RESTART_DELAY_MAX);
                    self.logger.log(
                        Level::Error,
                        format_args!(
                            "worker {}: cannot fork: {}",
                            i + 2,
                            std::io::Error::last_os_error()
                        ),
                    );
                }
                0 => {
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
                    if unsafe { libc::getppid() } != self.me {
                        unsafe { libc::_exit(0) };
                    }
                    set_handler(libc::SIGTERM, libc::SIG_DFL);
                    set_handler(libc::SIGINT, libc::SIG_DFL);
                    return Some(i + 1);
                }
                pid => {
                    slot.pid = Some(pid);
                    slot.started = now;
                    slot.restart_at = None;
                }
            }
        }
        None
    }

    /// Collects the workers that ended: logs each, and schedules its replacement unless
    /// it ended cleanly (a stop).
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) else {
                continue;
            };
            let slot = &mut self.slots[i];
            slot.pid = None;
            let how = if libc::WIFSIGNALED(status) {
                format!("was killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exited with status {}", libc::WEXITSTATUS(status))
            };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                slot.finished = true;
                self.logger.log(
                    Level::Info,
                    format_args!("worker {} (pid {pid}) {how}", i + 2),
                );
                continue;
            }
            let lived = slot.started.elapsed();
            slot.crashes = if lived < CRASH_WITHIN {
                slot.crashes + 1
            } else {
                0
            };
            let delay = match slot.crashes {
                0 | 1 => Duration::ZERO,
                n => (Duration::from_secs(1) * 2u32.pow((n - 2).min(5))).min(RESTART_DELAY_MAX),
            };
            slot.restart_at = Some(Instant::now() + delay);
            self.logger.log(
                Level::Error,
                format_args!(
                    "worker {} (pid {pid}) {how} after {:.1} s; starting a replacement in {} s",
                    i + 2,
                    lived.as_secs_f64(),
                    delay.as_secs()
                ),
            );
        }
    }

    /// Stops every worker (SIGTERM, then SIGKILL past the limit) and waits for them.
    fn stop_all(&mut self) {
        let live: Vec<libc::pid_t> = self.slots.iter().filter_map(|s| s.pid).collect();
        reap(&live, self.limit);
    }
}

/// Asks `pids` to end (SIGTERM) and waits for them up to `limit`, then kills what is left.
pub fn reap(pids: &[libc::pid_t], limit: Duration) {
    for &pid in pids {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + limit;
    let mut left = pids.to_vec();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in left {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// One other worker, as this one sends to it.
struct Peer {
    queue: mpsc::Sender<Vec<u8>>,
    /// Whether the connection to it is up (while it is not, nothing is queued for it).
    connected: Rc<Cell<bool>>,
}

/// This worker's live side of the mesh, on its event loop.
pub struct Mesh {
    pub index: usize,
    pub count: usize,
    peers: Vec<Peer>,
    pub supervisor: Option<libc::pid_t>,
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + body.len());
    m.push(kind);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

impl Mesh {
    /// Starts a sender task per peer and the accept loop (on the Lua state's runtime).
    pub fn start(forked: Forked, to: Weak<dyn FromSiblings>) -> std::io::Result<Rc<Mesh>> {
        forked.listener.set_nonblocking(true)?;
        let listener = runtime::enter(|| tokio::net::UnixListener::from_std(forked.listener))?;
        runtime::spawn(accept_siblings(listener, to));
        let mut peers = Vec::new();
        for worker in (0..forked.count).filter(|&w| w != forked.index) {
            let (queue, rx) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
            let connected = Rc::new(Cell::new(false));
            let address = mesh_address(&forked.token, worker)?;
            runtime::spawn(send_to_sibling(
                address,
                forked.index,
                rx,
                Rc::clone(&connected),
            ));
            peers.push(Peer { queue, connected });
        }
        Ok(Rc::new(Mesh {
            index: forked.index,
            count: forked.count,
            peers,
            supervisor: forked.supervisor,
        }))
    }

    /// Queues `m` for every connected peer; how many could not take it.
    fn broadcast(&self, m: Vec<u8>) -> u64 {
        let mut dropped = 0;
        for peer in &self.peers {
            if !peer.connected.get() || peer.queue.try_send(m.clone()).is_err() {
                dropped += 1;
            }
        }
        dropped
    }

    /// Sends a publish to every other worker; how many could not take it (down, or its
    /// queue full).
    pub fn publish(&self, topic: &str, op: u8, data: &[u8]) -> u64 {
        let mut body = Vec::with_capacity(3 + topic.len() + data.len());
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.push(op);
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(data);
        self.broadcast(message(b'P', &body))
    }

    /// Sends this worker's counters to the others.
    pub fn counters(&self, counters: &[(String, u64)]) {
        let mut body = Vec::new();
        for (k, v) in counters {
            let _ = writeln!(body, "{k}={v}");
        }
        self.broadcast(message(b'C', &body));
    }

    /// Tells every other worker to stop.
    pub fn stop_all(&self) {
        self.broadcast(message(b'X', &[]));
    }
}

/// Keeps a connection to one sibling's mesh socket and writes what is queued for it;
/// when the sibling closes its end (it died: its replacement will accept a new
/// connection) connects again, every 20 ms doubling to 1 s. Ends when the mesh is dropped.
async fn send_to_sibling(
    address: SocketAddr,
    me: usize,
    mut queue: mpsc::Receiver<Vec<u8>>,
    connected: Rc<Cell<bool>>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let stream = std::os::unix::net::UnixStream::connect_addr(&address)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UnixStream::from_std);
        if let Ok(stream) = stream {
            if send_all(&stream, &(me as u32).to_be_bytes()).await.is_ok() {
                backoff = Duration::from_millis(20);
                connected.set(true);
                loop {
                    tokio::select! {
                        m = queue.recv() => match m {
                            Some(m) => if send_all(&stream, &m).await.is_err() { break },
                            None => return,
                        },
                        _ = closed(&stream) => break,
                    }
                }
                connected.set(false);
                while queue.try_recv().is_ok() {}
            }
        }
        if queue.is_closed() {
            return;
        }
        timers::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Writes all of `buf`; a sibling that is gone is an error, not a SIGPIPE (MSG_NOSIGNAL).
async fn send_all(stream: &tokio::net::UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            let n = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Completes when the sibling has closed its end (it never writes on this connection).
async fn closed(stream: &tokio::net::UnixStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

/// Accepts the siblings' connections; each is read until it ends.
async fn accept_siblings(listener: tokio::net::UnixListener, to: Weak<dyn FromSiblings>) {
    while let Ok((stream, _)) = listener.accept().await {
        let to = to.clone();
        runtime::spawn(async move {
            let (worker, ended) = read_sibling(stream, &to).await;
            if let (Some(worker), Some(to)) = (worker, to.upgrade()) {
                if ended {
                    to.gone(worker);
                }
            }
        });
    }
}

/// Reads one sibling's messages; returns its index (once known) and whether its
/// connection ended (rather than this worker going away).
async fn read_sibling(
    mut stream: tokio::net::UnixStream,
    to: &Weak<dyn FromSiblings>,
) -> (Option<usize>, bool) {
    let mut index = [0u8; 4];
    if stream.read_exact(&mut index).await.is_err() {
        return (None, true);
    }
    let worker = u32::from_be_bytes(index) as usize;
    let mut head = [0u8; 5];
    loop {
        if stream.read_exact(&mut head).await.is_err() {
            return (Some(worker), true);
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return (Some(worker), true);
        }
        let Some(to) = to.upgrade() else {
            return (Some(worker), false);
        };
        receive(&*to, worker, head[0], &body);
    }
}

fn receive(to: &dyn FromSiblings, peer: usize, kind: u8, body: &[u8]) {
    match kind {
        b'P' if body.len() >= 3 => {
            let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
            let Some(topic) = body.get(3..3 + topic_len) else {
                return;
            };
            let Ok(topic) = std::str::from_utf8(topic) else {
                return;
            };
            to.published(topic, body[2], &body[3 + topic_len..]);
        }
        b'C' => {
            let counters = String::from_utf8_lossy(body)
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            to.counters(peer, counters);
        }
        b'X' => to.stop(),
        _ => {}
    }
}
