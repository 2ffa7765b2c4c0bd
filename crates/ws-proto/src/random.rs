//! random: unpredictable bytes from the kernel (getrandom(2)), for client frame masks
//! (RFC 6455 §5.3) and `Sec-WebSocket-Key`s. Works on any thread: the evluaserver runtime
//! calls it from evluaserver's worker threads.

use std::cell::RefCell;
use std::io::ErrorKind;

/// Fills `buf` from the kernel's random generator.
pub fn fill(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// A fresh mask for one client frame, drawn from a per-thread pool refilled 256 masks at
/// a time (one syscall per 256 frames).
pub fn mask() -> [u8; 4] {
    thread_local! {
        static POOL: RefCell<([u8; 1024], usize)> = const { RefCell::new(([0; 1024], 1024)) };
    }
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used == bytes.len() {
            fill(bytes);
            *used = 0;
        }
        let m = [
            bytes[*used],
            bytes[*used + 1],
            bytes[*used + 2],
            bytes[*used + 3],
        ];
        *used += 4;
        m
    })
}
