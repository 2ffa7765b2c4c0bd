//! host_loop: the module's event loop driven from someone else's (Neovim's luv loop,
//! cqueues, copas, a game's frame loop) instead of `server:run()`.
//!
//! Three entry points: `step` runs what is ready and returns; `pollfd` is a descriptor
//! that is readable whenever there is something to run (the runtime's epoll descriptor:
//! socket readiness, and every wake-up of a task, which tokio signals through an eventfd
//! inside it); `timeout` is how long until the next timer (the timers of `timers`).
//! A host waits on both, calls `step(0)`, and waits again.

use crate::standalone::{runtime, timers};
use std::os::fd::RawFd;
use std::time::Duration;
use tokio::time::Instant;

/// How long one `step(0)` may keep running work that keeps arriving (a steady stream of
/// frames is never "done"): the host gets its thread back at least this often.
pub const STEP_BUDGET: Duration = Duration::from_millis(10);

/// tokio's timers ring on whole milliseconds, rounded up: a host that wakes at the exact
/// deadline may find the timer not rung yet, so `timeout` adds this much.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// Waits `wait` (0: not at all) while running the loop, then runs what is ready until
/// nothing is left or `STEP_BUDGET` has passed. Returns whether work was left over (the
/// descriptor is readable again then).
pub fn step(wait: Duration) -> mlua::Result<bool> {
    runtime::block_on("ws.step", async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        run_ready().await
    })
}

/// Rounds of the loop (the ready tasks, then I/O and timers without blocking) until two
/// rounds in a row in which none of the module's tasks ran: a task woken by the last
/// round's I/O runs in the next one. A task woken after that signals the descriptor.
async fn run_ready() -> bool {
    let until = Instant::now() + STEP_BUDGET;
    let mut seen = runtime::polls();
    let mut quiet_rounds = 0;
    while quiet_rounds < 2 {
        tokio::task::yield_now().await;
        let polls = runtime::polls();
        if polls == seen {
            quiet_rounds += 1;
        } else if Instant::now() >= until {
            return true;
        } else {
            quiet_rounds = 0;
            seen = polls;
        }
    }
    false
}

/// The descriptor a host waits on for readability.
pub fn pollfd() -> mlua::Result<RawFd> {
    runtime::epoll_fd().ok_or_else(|| {
        mlua::Error::runtime(
            "ws.pollfd: the event loop's descriptor was not found (needs Linux with /proc)",
        )
    })
}

/// Seconds until the next timer of the module, or `None` without one.
pub fn timeout() -> Option<f64> {
    let at = timers::next_deadline()?;
    let left = at.saturating_duration_since(Instant::now()) + TIMER_GRAIN;
    Some(left.as_secs_f64())
}
