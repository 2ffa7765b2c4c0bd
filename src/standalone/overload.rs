//! overload: what the server does about the process's descriptor limit.
//!
//! At start, `max_connections` is lowered to what `RLIMIT_NOFILE` allows (less a reserve
//! for the listener, the event loop, logs and the handlers' own files), and the server
//! says so. If `accept` still fails for want of descriptors (EMFILE / ENFILE: a handler
//! holds files, another server shares the limit), [`AcceptErrors`] backs off with a
//! growing pause, logs at most once a second with a count, and answers the waiting
//! client with 503 through a descriptor kept in reserve for exactly that — instead of
//! leaving clients hanging in the backlog and logging ten times a second.

use crate::standalone::http::Response;
use crate::standalone::timers::{sleep, timeout};
use std::fs::File;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Descriptors kept out of `max_connections`: stdio, the listener, the event loop's
/// own, the reserve below, log files and what handlers open.
pub const RESERVED_DESCRIPTORS: u64 = 32;

/// The soft descriptor limit of the process, if it has one.
pub fn descriptor_limit() -> Option<u64> {
    // SAFETY: getrlimit only writes into the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The connection cap the descriptor limit allows: `wanted`, or less.
pub fn connection_cap(wanted: u64, limit: Option<u64>) -> u64 {
    match limit {
        Some(l) => wanted.min(l.saturating_sub(RESERVED_DESCRIPTORS).max(1)),
        None => wanted,
    }
}

/// Whether an accept error means the process or system is out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The accept loop's handling of errors: back-off, a rate-limited log, and the reserve.
pub struct AcceptErrors {
    /// A descriptor held in reserve (`/dev/null`), given up to accept one client and
    /// tell it 503 when no other descriptor is left.
    reserve: Option<File>,
    /// The pause after the next error; doubles up to `MAX_PAUSE`, reset by a success.
    pause: Duration,
    /// When the last log line was written, and errors since.
    logged_at: Option<Instant>,
    unlogged: u64,
}

const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            reserve: File::open("/dev/null").ok(),
            pause: MIN_PAUSE,
            logged_at: None,
            unlogged: 0,
        }
    }
}

impl AcceptErrors {
    /// An accept succeeded: the next error starts with a short pause again.
    pub fn succeeded(&mut self) {
        self.pause = MIN_PAUSE;
    }

    /// Handles an accept error: answers a waiting client with 503 when descriptors ran
    /// out, pauses, and returns a line to log when one is due (at most once a second).
    pub async fn failed(&mut self, e: std::io::Error, listener: &TcpListener) -> Option<String> {
        let mut answered = false;
        if out_of_descriptors(&e) {
            answered = self.answer_one(listener).await;
        }
        self.unlogged += 1;
        let now = Instant::now();
        let line = if self.logged_at.is_none_or(|at| now >= at + LOG_EVERY) {
            let line = format!(
                "accept failed: {e} ({} time{} since the last report{}); pausing {:?}",
                self.unlogged,
                if self.unlogged == 1 { "" } else { "s" },
                if answered {
                    "; a waiting client was answered 503"
                } else {
                    ""
                },
                self.pause
            );
            self.logged_at = Some(now);
            self.unlogged = 0;
            Some(line)
        } else {
            None
        };
        sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        line
    }

    /// Frees the reserve descriptor, accepts one waiting client, writes it a 503 (what
    /// the socket takes at once) and closes it, then takes the reserve back.
    async fn answer_one(&mut self, listener: &TcpListener) -> bool {
        if self.reserve.take().is_none() {
            return false;
        }
        let mut answered = false;
        if let Ok(Ok((stream, _))) = timeout(Duration::from_millis(1), listener.accept()).await {
            let response =
                Response::error(503, "Server is out of file descriptors; try again later");
            let _ = stream.try_write(&response.to_bytes());
            answered = true;
        }
        self.reserve = File::open("/dev/null").ok();
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn the_connection_cap_leaves_room_for_the_reserve() {
        assert_eq!(
            connection_cap(10_000, Some(256)),
            256 - RESERVED_DESCRIPTORS
        );
        assert_eq!(connection_cap(100, Some(1 << 20)), 100);
        assert_eq!(connection_cap(100, None), 100);
        assert_eq!(connection_cap(100, Some(10)), 1);
    }

    #[test]
    fn only_emfile_and_enfile_mean_out_of_descriptors() {
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&std::io::Error::from(
            ErrorKind::ConnectionAborted
        )));
    }
}
