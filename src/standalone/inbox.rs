//! inbox: the messages of a client connection without a `msg_handler`, waiting for
//! `conn:recv()`. Bounded: while it holds `max_bytes` or more, the frame loop stops
//! reading (the push waits), so TCP pushes back on the peer.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::Notify;

/// Messages waiting for `recv` on a connection without a handler. Bounded: while it holds
/// `max_bytes` or more, the frame loop stops reading, so TCP pushes back on the peer.
pub struct Inbox {
    /// (opcode, data, came compressed)
    queue: RefCell<VecDeque<(u8, Bytes, bool)>>,
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
    pub fn new(max_bytes: usize) -> Self {
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
    pub async fn push(&self, op: u8, data: Bytes, compressed: bool) {
        loop {
            let taken = self.taken.notified();
            if self.queue.borrow().is_empty() || self.bytes.get() + data.len() <= self.max_bytes {
                break;
            }
            taken.await;
        }
        self.bytes.set(self.bytes.get() + data.len());
        self.queue.borrow_mut().push_back((op, data, compressed));
        self.arrived.notify_waiters();
    }

    /// Records the end of the connection; `recv` returns it once the queue is empty.
    pub fn close(&self, code: u16, reason: &str) {
        *self.closed.borrow_mut() = Some((code, reason.to_owned()));
        self.arrived.notify_waiters();
    }

    /// The next message, waiting up to `limit` (forever when `None`).
    pub async fn next(&self, limit: Option<Duration>) -> Result<(u8, Bytes, bool), RecvEnd> {
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        loop {
            let arrived = self.arrived.notified();
            if let Some((op, data, compressed)) = self.queue.borrow_mut().pop_front() {
                self.bytes.set(self.bytes.get() - data.len());
                self.taken.notify_waiters();
                return Ok((op, data, compressed));
            }
            if let Some((code, reason)) = self.closed.borrow().clone() {
                return Err(RecvEnd::Closed(code, reason));
            }
            match deadline {
                Some(d) => {
                    if crate::standalone::timers::timeout_at(d, arrived)
                        .await
                        .is_err()
                    {
                        return Err(RecvEnd::Timeout);
                    }
                }
                None => arrived.await,
            }
        }
    }
}
