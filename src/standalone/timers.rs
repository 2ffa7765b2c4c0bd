//! timers: every timer of the event loop, known by its deadline.
//!
//! tokio keeps its timers to itself; a host loop that drives this module with `ws.step`
//! must know when the next one rings (`ws.timeout()`, and the timer descriptor behind
//! `ws.pollfd()`). So the module's timers are made here: each holds a [`Mark`] in a
//! thread-local table of deadlines while it waits, removed when it rings, is re-armed
//! or is dropped. Timers made by other crates (the Redis client's) are not in the table.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

thread_local! {
    /// (deadline, serial) of every waiting timer.
    static DEADLINES: RefCell<BTreeSet<(Instant, u64)>> = const { RefCell::new(BTreeSet::new()) };
    static SERIAL: Cell<u64> = const { Cell::new(0) };
}

/// A deadline in the table while it lives.
struct Mark(Instant, u64);

impl Mark {
    fn new(at: Instant) -> Mark {
        let serial = SERIAL.with(|s| {
            s.set(s.get() + 1);
            s.get()
        });
        DEADLINES.with(|d| d.borrow_mut().insert((at, serial)));
        Mark(at, serial)
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        let _ = DEADLINES.try_with(|d| d.borrow_mut().remove(&(self.0, self.1)));
    }
}

/// The earliest deadline still waiting (it may have passed: the timer's task has not run).
pub fn next_deadline() -> Option<Instant> {
    DEADLINES.with(|d| d.borrow().first().map(|(at, _)| *at))
}

/// A timer that can be armed, re-armed and waited on again (a connection's one timer
/// for all the engine's deadlines).
pub struct Alarm {
    sleep: Pin<Box<Sleep>>,
    mark: Option<Mark>,
}

impl Alarm {
    /// An alarm that is not armed: [`ring`](Self::ring) never completes until armed.
    pub fn unarmed() -> Alarm {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            mark: None,
        }
    }

    pub fn arm(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.mark = Some(Mark::new(at));
    }

    /// When it is armed for, if it is.
    pub fn armed(&self) -> Option<Instant> {
        self.mark.as_ref().map(|m| m.0)
    }

    /// Completes when the armed deadline has passed; disarms.
    pub async fn ring(&mut self) {
        if self.mark.is_none() {
            std::future::pending::<()>().await;
        }
        self.sleep.as_mut().await;
        self.mark = None;
    }
}

/// Like `tokio::time::sleep`, with its deadline in the table.
pub async fn sleep(d: Duration) {
    let mut alarm = Alarm::unarmed();
    alarm.arm(Instant::now() + d);
    alarm.ring().await
}

/// Like `tokio::time::timeout_at`, with its deadline in the table.
pub async fn timeout_at<F: Future>(at: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let _mark = Mark::new(at);
    tokio::time::timeout_at(at, fut).await.map_err(|_| Elapsed)
}

/// Like `tokio::time::timeout`, with its deadline in the table.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + d, fut).await
}

/// A [`timeout`] that ran out.
#[derive(Debug)]
pub struct Elapsed;
