//! flusher: the loop's one writer for plain sockets. A connection that queued frames
//! asks to be written ([`schedule`]); the first request of a round of the loop starts a
//! task, which runs after the tasks already ready (so a connection's frame loop has
//! usually handled all its peer sent by then) and writes every connection that asked,
//! each with one `sendmsg` as far as its socket takes it at once
//! ([`Connection::write_now`]). As uWebSockets corks its sockets for a loop iteration,
//! this batches the writes of a busy server without a task per connection.
//!
//! It also keeps the thread's spare write buffers: a connection's outbox, once written, is
//! handed back here ([`give_back`]) and lent to the next connection that queues into an
//! empty outbox ([`lend`]) — so a busy connection does not grow a fresh buffer every round,
//! and an idle one holds none. At most [`SPARE_COUNT`] buffers, [`SPARE_BYTES`] in all,
//! are kept.

use crate::standalone::connection::Connection;
use crate::standalone::runtime;
use bytes::BytesMut;
use std::cell::RefCell;
use std::rc::Rc;
use ws_proto::engine::Engine;

/// The most bytes of spare write buffers a thread keeps, the most buffers, and the
/// largest buffer kept.
const SPARE_BYTES: usize = 1 << 20;
const SPARE_COUNT: usize = 256;
const SPARE_MAX: usize = 64 << 10;

thread_local! {
    /// The connections to write in the coming round; not empty exactly while a flusher
    /// task is scheduled.
    static WAITING: RefCell<Vec<Rc<Connection>>> = const { RefCell::new(Vec::new()) };
    /// Written outboxes, empty, for the next connections to queue into; their capacity.
    static SPARE: RefCell<(Vec<BytesMut>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Gives `engine` a spare buffer for its outbox when it has none.
pub fn lend(engine: &mut Engine) {
    if engine.outbox_capacity() == 0 {
        if let Some(buffer) = SPARE.with(|s| {
            let (buffers, bytes) = &mut *s.borrow_mut();
            let buffer = buffers.pop()?;
            *bytes -= buffer.capacity();
            Some(buffer)
        }) {
            engine.put_back(Vec::new(), buffer, 0);
        }
    }
}

/// Keeps a written outbox for [`lend`] (emptied), unless enough are kept.
pub fn give_back(mut buffer: BytesMut) {
    buffer.clear();
    let size = buffer.capacity();
    if size == 0 || size > SPARE_MAX {
        return;
    }
    SPARE.with(|s| {
        let (buffers, bytes) = &mut *s.borrow_mut();
        if *bytes + size <= SPARE_BYTES && buffers.len() < SPARE_COUNT {
            *bytes += size;
            buffers.push(buffer);
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use ws_proto::codec::{opcode, Role};
    use ws_proto::engine::Settings;

    fn spare_bytes() -> usize {
        SPARE.with(|s| s.borrow().1)
    }

    #[test]
    fn a_written_outbox_is_lent_to_the_next_connection_that_queues() {
        let now = Instant::now();
        let mut first = Engine::new(Role::Server, Settings::default(), now);
        first.send(opcode::BINARY, &[b'x'; 5000], false, || now).unwrap();
        let (mut chunks, mut written) = (Vec::new(), BytesMut::new());
        assert!(first.take_output(&mut chunks, &mut written));
        let size = written.capacity();
        give_back(written);
        assert_eq!(spare_bytes(), size);
        let mut next = Engine::new(Role::Server, Settings::default(), now);
        lend(&mut next);
        assert_eq!(next.outbox_capacity(), size, "the written buffer, reused");
        assert_eq!(spare_bytes(), 0);
        lend(&mut next);
        assert_eq!(next.outbox_capacity(), size, "one buffer per outbox");
    }

    #[test]
    fn spare_buffers_are_bounded_in_size_and_in_total() {
        give_back(BytesMut::with_capacity(SPARE_MAX + 1));
        assert_eq!(spare_bytes(), 0, "a buffer over SPARE_MAX is freed");
        for _ in 0..100 {
            give_back(BytesMut::with_capacity(SPARE_MAX));
        }
        assert_eq!(spare_bytes(), SPARE_BYTES, "at most SPARE_BYTES kept");
    }

    #[test]
    fn at_most_spare_count_buffers_are_kept() {
        for _ in 0..SPARE_COUNT + 10 {
            give_back(BytesMut::with_capacity(64));
        }
        assert_eq!(SPARE.with(|s| s.borrow().0.len()), SPARE_COUNT);
    }
}
