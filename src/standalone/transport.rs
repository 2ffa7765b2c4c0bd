//! transport: the write side of a WebSocket's stream — plain TCP (with direct and
//! vectored writes, which must not raise SIGPIPE) or any other stream (TLS; an in-memory
//! duplex in the tests) — writing all of a buffer, and FIN at the end.

use std::io::{ErrorKind, IoSlice};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// Writes `bufs` with one `sendmsg(MSG_NOSIGNAL)`, without waiting. Not `writev`
/// (`try_write_vectored`): that raises SIGPIPE, which kills the process, when the peer
/// has reset the connection — and the library must not change the process's signal
/// disposition. (Plain writes are `send(MSG_NOSIGNAL)` in std already.)
pub fn send_vectored(socket: &OwnedWriteHalf, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
    let stream: &TcpStream = socket.as_ref();
    stream.try_io(Interest::WRITABLE, || {
        // SAFETY: IoSlice is ABI-compatible with iovec (std documents it); msghdr is
        // zeroed and points at `bufs` only for the duration of the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// The most buffers given to one `sendmsg`.
const MAX_IOV: usize = 64;

/// `chunks` then `tail`, without the empty ones: the parts of one vectored write.
pub fn parts_of<'a>(chunks: &'a [bytes::Bytes], tail: &'a [u8]) -> Vec<&'a [u8]> {
    chunks
        .iter()
        .map(|c| &c[..])
        .chain(std::iter::once(tail))
        .filter(|p| !p.is_empty())
        .collect()
}

/// How far a vectored write of several parts has got: the part, and the bytes of it
/// already written.
#[derive(Default, Debug, PartialEq)]
pub struct Cursor {
    pub part: usize,
    pub offset: usize,
}

/// Sends as much of `parts` (from `at`, which it advances) as the socket takes now, with
/// as few `sendmsg` calls as it allows: true once all is written, false when the socket
/// is full.
pub fn send_parts_now(
    socket: &OwnedWriteHalf,
    parts: &[&[u8]],
    at: &mut Cursor,
) -> std::io::Result<bool> {
    while at.part < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[at.part][at.offset..])
            .chain(parts[at.part + 1..].iter().copied())
            .take(MAX_IOV)
            .map(IoSlice::new)
            .collect();
        match send_vectored(socket, &slices) {
            Ok(mut n) => {
                while at.part < parts.len() && n >= parts[at.part].len() - at.offset {
                    n -= parts[at.part].len() - at.offset;
                    at.part += 1;
                    at.offset = 0;
                }
                at.offset += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The write half of the transport: the connection keeps it while no burst of writes
/// runs, the burst task holds it while one does.
pub enum WriteSide {
    /// Plain TCP: shared with the connection for direct writes.
    Plain(Rc<OwnedWriteHalf>),
    /// Any other stream: TLS, or `tokio::io::duplex` in the tests.
    Stream(Box<dyn AsyncWrite + Unpin>),
}

impl WriteSide {
    /// Writes all of `buf`, waiting for the socket as needed; false on error.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> bool {
        match self {
            WriteSide::Plain(socket) => {
                while !buf.is_empty() {
                    match socket.try_write(buf) {
                        Ok(n) => buf = &buf[n..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if socket.writable().await.is_err() {
                                return false;
                            }
                        }
                        Err(_) => return false,
                    }
                }
                true
            }
            // and flushed: a TLS stream may keep what the socket did not take yet
            WriteSide::Stream(w) => w.write_all(buf).await.is_ok() && w.flush().await.is_ok(),
        }
    }

    /// Writes all of `chunks` and then `tail` — on plain TCP with as few `sendmsg` calls
    /// as the socket allows (frames published to a topic arrive as chunks); false on error.
    pub async fn write_all_chunks(&mut self, chunks: &[bytes::Bytes], tail: &[u8]) -> bool {
        let WriteSide::Plain(socket) = self else {
            for c in chunks {
                if !self.write_all(c).await {
                    return false;
                }
            }
            return self.write_all(tail).await;
        };
        let parts = parts_of(chunks, tail);
        let mut at = Cursor::default();
        loop {
            match send_parts_now(socket, &parts, &mut at) {
                Ok(true) => return true,
                Ok(false) => {
                    if socket.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Sends FIN (TLS: close_notify first) at once, whoever else still holds the socket:
    /// after our last frame the server closes the TCP connection first (RFC 6455 §7.1.1),
    /// not after the peer has.
    pub async fn shutdown(self) {
        match self {
            WriteSide::Plain(socket) => shutdown_plain(&socket),
            WriteSide::Stream(mut w) => {
                let _ = w.shutdown().await;
            }
        }
    }
}

/// Sends FIN on a plain socket (see [`WriteSide::shutdown`]).
pub fn shutdown_plain(socket: &OwnedWriteHalf) {
    let stream: &TcpStream = socket.as_ref();
    // SAFETY: shutdown(2) of the write direction of a descriptor we own.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
}
