//! flusher: the loop's one writer for plain sockets. A connection that queued frames
//! asks to be written ([`schedule`]); the first request of a round of the loop starts a
//! task, which runs after the tasks already ready (so a connection's frame loop has
//! usually handled all its peer sent by then) and writes every connection that asked,
//! each with one `sendmsg` as far as its socket takes it at once
//! ([`Connection::write_now`]). As uWebSockets corks its sockets for a loop iteration,
//! this batches the writes of a busy server without a task per connection.

use crate::standalone::connection::Connection;
use crate::standalone::runtime;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The connections to write in the coming round; not empty exactly while a flusher
    /// task is scheduled.
    static WAITING: RefCell<Vec<Rc<Connection>>> = const { RefCell::new(Vec::new()) };
}

/// Has `conn` written by this round's flusher (started by the first request).
pub fn schedule(conn: Rc<Connection>) {
    let first = WAITING.with(|w| {
        let mut waiting = w.borrow_mut();
        waiting.push(conn);
        waiting.len() == 1
    });
    if first {
        runtime::spawn(flush(Round));
    }
}

/// A round's flusher task: writes everything that waits.
async fn flush(_round: Round) {
    let mut batch = WAITING.with(|w| std::mem::take(&mut *w.borrow_mut()));
    for conn in batch.drain(..) {
        conn.write_now();
    }
    // The (empty) list's memory serves the next round.
    WAITING.with(|w| {
        let mut waiting = w.borrow_mut();
        if waiting.capacity() == 0 {
            *waiting = batch;
        }
    });
}

/// Owned by a flusher task: when the loop drops the task without running it (the Lua
/// state closing), the connections that waited are let go, and the next request starts
/// a new task.
struct Round;

impl Drop for Round {
    fn drop(&mut self) {
        let _ = WAITING.try_with(|w| w.try_borrow_mut().map(|mut w| w.clear()));
    }
}
