//! front: the HTTP exchange before a WebSocket exists, as I/O — reading a head off a
//! stream (both sides of the opening handshake use [`read_head`]), and the server's
//! verdict on a request before `ws.accept` sees it ([`judge_request`]): a malformed head
//! is 400, an oversized one 431, a plain request goes to the static directory or gets
//! 426, an HTTP/1.0 Upgrade is 400. The server writes, counts and logs the verdict.

use crate::standalone::http::Response;
use crate::standalone::timers::timeout_at;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use ws_proto::handshake::{parse_request, HeadError, RequestHead, NOT_HTTP_1_1};

/// Why no head was read.
#[derive(Debug)]
pub enum HeadReadError {
    /// The peer closed the stream first.
    Closed,
    Io(std::io::Error),
    /// The bytes are not a head within the limits.
    Head(HeadError),
}

/// Reads from `stream` into `buf` until `parse` finds a complete head at its start;
/// returns it, leaving in `buf` what came after it (the first frames, maybe).
pub async fn read_head<S, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>,
) -> Result<T, HeadReadError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some((head, len)) = parse(buf).map_err(HeadReadError::Head)? {
            buf.advance(len);
            return Ok(head);
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) => return Err(HeadReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HeadReadError::Io(e)),
        }
    }
}

/// What the server makes of a connection's first request.
pub enum Verdict {
    /// A WebSocket Upgrade request, for `ws.accept`.
    Upgrade(RequestHead),
    /// A plain request, for the static directory.
    Static(RequestHead),
    /// The client went away: nothing to answer.
    Gone,
    /// No whole head before the deadline (slowloris): dropped without an answer.
    TimedOut,
    /// Answer this, count it under its status, and close; `why` is for the log.
    Refuse {
        response: Response,
        why: &'static str,
    },
}

/// Reads the request head (within `deadline` and the head limits) and judges it.
pub async fn judge_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_headers: usize,
    max_head_bytes: usize,
    deadline: Instant,
    serves_static: bool,
) -> Verdict {
    let read = read_head(stream, buf, |b| {
        parse_request(b, max_headers, max_head_bytes)
    });
    let head = match timeout_at(deadline, read).await {
        Err(_) => return Verdict::TimedOut,
        Ok(Err(HeadReadError::Closed | HeadReadError::Io(_))) => return Verdict::Gone,
        Ok(Err(HeadReadError::Head(HeadError::TooLarge))) => {
            return Verdict::Refuse {
                response: Response::error(431, "Request header fields too large"),
                why: "oversized request head",
            }
        }
        Ok(Err(HeadReadError::Head(HeadError::Malformed(e)))) => {
            return Verdict::Refuse {
                response: Response::error(400, &format!("Malformed HTTP request: {e}")),
                why: "malformed request head",
            }
        }
        Ok(Ok(head)) => head,
    };
    if !head.is_websocket_upgrade() {
        if serves_static {
            return Verdict::Static(head);
        }
        return Verdict::Refuse {
            response: Response::error(
                426,
                "This endpoint speaks WebSocket only: send a GET with Upgrade: websocket",
            ),
            why: "not an Upgrade: websocket request",
        };
    }
    if head.http_minor == 0 {
        // RFC 6455 §4.1: the Upgrade is an HTTP/1.1 (or later) mechanism.
        return Verdict::Refuse {
            response: Response::error(400, NOT_HTTP_1_1),
            why: "HTTP/1.0 Upgrade request",
        };
    }
    Verdict::Upgrade(head)
}

/// Writes a whole answer and closes the stream (FIN).
pub async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, response: &Response) {
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_a_byte_at_a_time_past_the_deadline_is_dropped_at_the_deadline() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let start = Instant::now();
        let slow = async move {
            for b in b"GET /echo HTTP/1.1\r\nHost: x\r\n" {
                theirs.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            theirs
        };
        let mut buf = BytesMut::new();
        let judge = judge_request(
            &mut ours,
            &mut buf,
            64,
            8192,
            start + Duration::from_secs(10),
            false,
        );
        let (verdict, _) = tokio::join!(judge, slow);
        assert!(matches!(verdict, Verdict::TimedOut));
        assert!(start.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_complete_before_the_deadline_is_judged() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let start = Instant::now();
        theirs
            .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let verdict = judge_request(
            &mut ours,
            &mut BytesMut::new(),
            64,
            8192,
            start + Duration::from_secs(10),
            false,
        )
        .await;
        assert!(matches!(verdict, Verdict::Refuse { ref response, .. } if response.status == 426));
    }
}
