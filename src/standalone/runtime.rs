//! runtime: the one event loop of the Lua state (standalone mode).
//!
//! A tokio current-thread runtime and a `LocalSet` live on the thread that loaded the
//! module; Lua values are `!Send`, so every task that touches Lua is a local task. Tasks
//! make progress only while a blocking entry point (`server:run()`, a `recv` from the main
//! chunk) drives the loop with [`block_on`]. Handlers run inside that loop and must never
//! block it again: [`block_on`] refuses to nest and says so, and [`wait`] picks between
//! suspending (inside the loop) and driving it (from the main chunk).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

/// The loop's clock as the engine takes it: tokio's (paused and advanced by hand in the
/// tests; the system's monotonic clock otherwise).
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Reactor {
    runtime: Runtime,
    /// Replaced by a fresh one when the Lua state closes (see [`LoopGuard`]). In an Rc so
    /// that the tests can drive it on a runtime of their own (a paused clock).
    local: RefCell<Rc<LocalSet>>,
    /// True while a `block_on` is driving the loop on this thread.
    driving: Cell<bool>,
    /// The runtime's epoll descriptor (readable while it has I/O to handle), if found.
    epoll_fd: Option<RawFd>,
}

/// Set once an event loop exists in the process (workers cannot be forked after that).
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static REACTOR: Reactor = {
        STARTED.store(true, std::sync::atomic::Ordering::Relaxed);
        let before = epoll_descriptors();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime");
        let epoll_fd = epoll_descriptors().into_iter().find(|fd| !before.contains(fd));
        Reactor {
            runtime,
            local: RefCell::new(Rc::new(LocalSet::new())),
            driving: Cell::new(false),
            epoll_fd,
        }
    };
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

/// The process's epoll descriptors (Linux: /proc/self/fd links to `anon_inode:[eventpoll]`).
/// tokio does not say which descriptor its I/O driver waits on; the one that appears while
/// the runtime is built is it.
fn epoll_descriptors() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let target = std::fs::read_link(entry.path()).ok()?;
        (target.as_os_str() == "anon_inode:[eventpoll]")
            .then(|| entry.file_name().to_str()?.parse().ok())?
    })
    .collect()
}

/// The descriptor of the runtime's I/O driver (see `host_loop`), made on first use.
pub fn epoll_fd() -> Option<RawFd> {
    REACTOR.with(|r| r.epoll_fd)
}

/// A task of the module, counting its polls so that a step can tell when nothing is
/// left to run (`polls` did not move over a round of the loop). The future is kept in
/// place (in the task's own allocation), not boxed again.
pub struct Counted<F>(F);

pub fn counted<F: Future>(fut: F) -> Counted<F> {
    Counted(fut)
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        POLLS.with(|p| p.set(p.get() + 1));
        // SAFETY: the field is pinned whenever `Counted` is (structural pinning): it is
        // never moved out, `Counted` has no Drop, and it is Unpin only when `F` is.
        unsafe { self.map_unchecked_mut(|c| &mut c.0) }.poll(cx)
    }
}

/// Polls of the module's tasks so far on this thread.
pub fn polls() -> u64 {
    POLLS.with(Cell::get)
}

/// Whether the event loop has been made in this process (by a server, a client, a sleep).
pub fn started() -> bool {
    STARTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Resets the `driving` flag even if the future panics.
struct DrivingGuard;

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        REACTOR.with(|r| r.driving.set(false));
    }
}

/// Runs the event loop until `fut` completes, serving every other task meanwhile.
/// `what` names the caller in the error raised when called from inside a handler.
pub fn block_on<F: Future>(what: &str, fut: F) -> mlua::Result<F::Output> {
    REACTOR.with(|r| {
        if r.driving.replace(true) {
            return Err(mlua::Error::runtime(format!(
                "{what}: cannot wait here: already inside the event loop (a handler must not call a blocking function; call it from the main chunk)"
            )));
        }
        let _guard = DrivingGuard;
        let local = r.local.borrow();
        Ok(local.block_on(&r.runtime, fut))
    })
}

/// Whether the loop is being driven right now, i.e. the caller is a handler coroutine
/// (the main chunk never runs while the loop runs). Blocking calls check this to choose
/// between suspending the coroutine and driving the loop themselves.
pub fn is_driving() -> bool {
    REACTOR.with(|r| r.driving.get())
}

/// Waits for `fut` in the way the caller can: a handler coroutine (the loop is running)
/// suspends until it completes; the main chunk drives the loop until it completes.
/// Timers must be created inside `fut` (they need the runtime), not before the call.
pub async fn wait<F: Future>(what: &str, fut: F) -> mlua::Result<F::Output> {
    if is_driving() {
        Ok(fut.await)
    } else {
        block_on(what, fut)
    }
}

/// Schedules a task on the loop (a client connection's frame loop, a burst of writes);
/// it runs whenever the loop is being driven. Callable from anywhere on the thread.
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) -> tokio::task::AbortHandle {
    REACTOR.with(|r| r.local.borrow().spawn_local(counted(fut)).abort_handle())
}

/// Runs `fut` on the loop's task set under the caller's runtime (the tests' paused clock),
/// so that what it spawns runs too.
#[cfg(test)]
pub async fn run_local<F: Future>(fut: F) -> F::Output {
    let local = REACTOR.with(|r| Rc::clone(&r.local.borrow()));
    local.run_until(fut).await
}

/// Runs `f` with the runtime entered, for creating tokio I/O objects outside `block_on`.
pub fn enter<R>(f: impl FnOnce() -> R) -> R {
    REACTOR.with(|r| {
        let _guard = r.runtime.enter();
        f()
    })
}

/// Kept in the Lua registry: when the Lua state closes, its finalizer drops every task
/// still on the loop (open connections, a server never run), while their Lua values can
/// still be released — not later, at thread exit, when the state is gone.
pub struct LoopGuard;

impl mlua::UserData for LoopGuard {}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = REACTOR.try_with(|r| {
            if let Ok(mut local) = r.local.try_borrow_mut() {
                let _entered = r.runtime.enter();
                drop(std::mem::replace(&mut *local, Rc::new(LocalSet::new())));
            }
        });
    }
}
