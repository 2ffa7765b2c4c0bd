//! workers: one server on every core. `ws.server{workers = N}` forks N - 1 copies of the
//! process right after binding, before any event loop exists: every worker has its own
//! copy of the Lua state and its own event loop, and accepts on the one listening socket
//! they share. A mesh of Unix stream sockets (one pair per two workers) carries what must
//! reach the others: publishes (so a topic spans every worker), each worker's counters
//! (so `server:stats()` adds them up) and stop. Processes, not threads: a Lua state cannot
//! be made here (the module lives in the host's Lua, which owns state creation), and a
//! process per core also keeps one worker's crash from taking the others down.
//!
//! On the mesh a message is `kind (1 byte) · length (4 bytes, big-endian) · body`:
//! `P` publish (`topic length (2) · opcode (1) · topic · data`), `C` counters
//! (`name=value` lines), `X` stop.

use std::cell::RefCell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::{Rc, Weak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Messages waiting for one peer; beyond, publishes to it are dropped.
const PEER_QUEUE: usize = 10_000;
/// How often a worker sends its counters to the others.
pub const COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// What a worker learns from its siblings.
pub trait FromSiblings {
    /// A message published in another worker: deliver it to local subscribers.
    fn published(&self, topic: &str, op: u8, data: &[u8]);
    /// Another worker's latest counters.
    fn counters(&self, worker: usize, counters: Vec<(String, u64)>);
    /// Another worker was stopped: stop too.
    fn stop(&self);
}

/// This process's place among the workers, before its event loop exists.
pub struct Forked {
    /// 0-based; worker 0 is the process that called `ws.server`.
    pub index: usize,
    pub count: usize,
    /// A stream to each other worker, by worker index (`None` at our own index).
    peers: Vec<Option<UnixStream>>,
    /// Worker 0: the other workers' process ids.
    pub children: Vec<libc::pid_t>,
}

/// Forks `count - 1` workers; returns in every one of them with its place. Must run
/// before any tokio runtime exists in the process (`runtime::started()`).
pub fn fork(count: usize) -> std::io::Result<Forked> {
    // One socket pair per two workers: ends[i][j] is i's end of the pair with j.
    let mut ends: Vec<Vec<Option<UnixStream>>> = (0..count)
        .map(|_| (0..count).map(|_| None).collect())
        .collect();
    for (i, j) in (0..count).flat_map(|i| (i + 1..count).map(move |j| (i, j))) {
        let (a, b) = UnixStream::pair()?;
        ends[i][j] = Some(a);
        ends[j][i] = Some(b);
    }
    let parent = unsafe { libc::getpid() };
    let mut children = Vec::new();
    let mut index = 0;
    for i in 1..count {
        // SAFETY: no other thread exists yet (no runtime): the child is a faithful copy.
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {
                index = i;
                // A worker ends with the process that started it.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
                if unsafe { libc::getppid() } != parent {
                    std::process::exit(0);
                }
                children.clear();
                break;
            }
            pid => children.push(pid),
        }
    }
    // Keep our row; the other rows' ends belong to other workers (dropping closes ours).
    let peers = std::mem::take(&mut ends[index]);
    Ok(Forked {
        index,
        count,
        peers,
        children,
    })
}

/// This worker's live side of the mesh, on its event loop.
pub struct Mesh {
    pub index: usize,
    pub count: usize,
    senders: Vec<mpsc::Sender<Vec<u8>>>,
    pub children: Vec<libc::pid_t>,
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + body.len());
    m.push(kind);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

impl Mesh {
    /// Starts a reader and a writer task per peer (on the Lua state's runtime).
    pub fn start(forked: Forked, to: Weak<dyn FromSiblings>) -> std::io::Result<Rc<Mesh>> {
        let mut senders = Vec::new();
        for (peer, end) in forked.peers.into_iter().enumerate() {
            let Some(end) = end else { continue };
            end.set_nonblocking(true)?;
            let stream =
                crate::standalone::runtime::enter(|| tokio::net::UnixStream::from_std(end))?;
            let (mut reader, mut writer) = stream.into_split();
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
            senders.push(tx);
            crate::standalone::runtime::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if writer.write_all(&m).await.is_err() {
                        return;
                    }
                }
            });
            let to = to.clone();
            crate::standalone::runtime::spawn(async move {
                let mut head = [0u8; 5];
                loop {
                    if reader.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let Some(to) = to.upgrade() else { return };
                    receive(&*to, peer, head[0], &body);
                }
            });
        }
        Ok(Rc::new(Mesh {
            index: forked.index,
            count: forked.count,
            senders,
            children: forked.children,
        }))
    }

    fn broadcast(&self, m: Vec<u8>) -> u64 {
        let mut dropped = 0;
        for s in &self.senders {
            if s.try_send(m.clone()).is_err() {
                dropped += 1;
            }
        }
        dropped
    }

    /// Sends a publish to every other worker; how many could not take it (queue full).
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

/// Worker 0, once its server has stopped: asks the other workers to end (SIGTERM) and
/// waits for them up to `limit`, then kills what is left.
pub fn reap(children: &[libc::pid_t], limit: std::time::Duration) {
    for &pid in children {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + limit;
    let mut left: Vec<libc::pid_t> = children.to_vec();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        left.retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for pid in left {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Counters of the other workers, by worker index, as last sent.
#[derive(Default)]
pub struct SiblingCounters(pub RefCell<Vec<Vec<(String, u64)>>>);
