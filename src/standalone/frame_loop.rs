//! frame_loop: the tokio driver of one open connection, apart from Lua. It reads bytes
//! (through the thread's one read buffer: a connection keeps only the bytes not yet
//! decoded, so an idle one holds none), lets the engine turn them into events and hands those to a
//! [`Deliver`] (the Lua side: `session`; a recorder in the tests below), keeps one timer
//! armed at the engine's next deadline, stops reading while the send queue is over
//! `send_buffer`, starts the closing handshake when the server stops, and after the ending
//! flushes, sends FIN and waits (bounded) for the peer. The protocol decisions (pongs,
//! close answers, timeouts, endings) are the engine's.
//!
//! The stream is any `AsyncRead` (the connection owns the write side), so the whole loop runs over
//! `tokio::io::duplex` in the tests, with tokio's clock paused: every deadline (keepalive,
//! idle, close, send) is checked there without waiting for it.

use crate::standalone::connection::Connection;
use crate::standalone::runtime;
use crate::standalone::timers::{timeout, Alarm};
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;
use ws_proto::engine::{Ending, Event, LocalClose};

/// Where the events of a connection go.
pub(crate) trait Deliver {
    /// The connection is open; nothing has been read yet.
    async fn opened(&self);
    /// One event (a message, a ping, a pong, a timeout about to close the connection).
    async fn event(&self, event: Event) -> mlua::Result<()>;
    /// The connection has ended (after this the loop only flushes and closes).
    async fn ended(&self, ending: &Ending) -> mlua::Result<()>;
}

/// The bytes received and not yet decoded, and an event taken out of them by the
/// deliverer and left for the loop. Shared with the deliverer, which may decode the
/// messages that follow the one it was given itself (one resume of a Lua coroutine for
/// every message a read brought) while the loop is not reading.
/// (One allocation per connection: [`Undecoded`] behind one Rc.)
#[derive(Clone, Default)]
pub struct Frames(Rc<Undecoded>);

#[derive(Default)]
pub struct Undecoded {
    pub input: RefCell<BytesMut>,
    pub stash: RefCell<Option<Event>>,
}

impl std::ops::Deref for Frames {
    type Target = Undecoded;
    fn deref(&self) -> &Undecoded {
        &self.0
    }
}

impl Frames {
    pub fn new(input: BytesMut) -> Self {
        Frames(Rc::new(Undecoded {
            input: RefCell::new(input),
            stash: RefCell::default(),
        }))
    }

    /// Keeps only the memory the undecoded bytes need: an empty input gives its buffer
    /// back, a mostly consumed one is copied into one its size. `frame_needs`: what the
    /// frame in progress still wants (its room is kept).
    pub fn shed(&self, frame_needs: usize) {
        let mut input = self.input.borrow_mut();
        if input.is_empty() {
            if input.capacity() > 0 {
                *input = BytesMut::new();
            }
        } else if input.capacity() > 2 * input.len().max(frame_needs) + SHED_SLACK {
            *input = BytesMut::from(&input[..]);
        }
    }

    /// The next event: a stashed one, else one decoded from the input or reported by
    /// the engine.
    pub fn next_event(&self, conn: &Connection) -> Option<Event> {
        let stashed = self.stash.borrow_mut().take();
        stashed.or_else(|| {
            conn.engine()
                .poll_event(&mut self.input.borrow_mut(), runtime::now)
        })
    }
}

thread_local! {
    /// Connections of this thread's Lua state whose frame loop is running (`ws.open_connections()`).
    static RUNNING: Cell<usize> = const { Cell::new(0) };
}

/// How many connections (server and client) this Lua state's runtime is running.
pub fn running() -> usize {
    RUNNING.with(|r| r.get())
}

/// Counts one running frame loop for as long as it lives (cancelled or not).
struct Running;

impl Running {
    fn start() -> Self {
        RUNNING.with(|r| r.set(r.get() + 1));
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(r.get() - 1));
    }
}

/// Hands `deliver` every event ready now, flushing after each; the ending once the
/// connection has ended.
async fn handle_ready<D: Deliver>(
    conn: &Connection,
    frames: &Frames,
    deliver: &D,
) -> mlua::Result<Option<Ending>> {
    loop {
        match frames.next_event(conn) {
            None => return Ok(None),
            Some(Event::Closed(ending)) => return Ok(Some(ending)),
            Some(event) => deliver.event(event).await?,
        }
        conn.flush();
    }
}

/// Runs an open connection until it has ended and been closed down. `stop` (the server's
/// stop signal) starts the closing handshake with 1001.
pub(crate) async fn drive<R: AsyncRead + Unpin, D: Deliver>(
    conn: &Rc<Connection>,
    mut reader: R,
    frames: &Frames,
    deliver: &D,
    mut stop: Option<watch::Receiver<bool>>,
) -> mlua::Result<()> {
    let _running = Running::start();
    // The sub-futures that exist for a moment (a handler call, the ending) are boxed:
    // inline, their state would be kept for the connection's whole life.
    Box::pin(deliver.opened()).await;
    // One timer for every deadline of the engine, kept across reads.
    let mut alarm = Alarm::unarmed();
    let ending = loop {
        if let Some(ending) = Box::pin(handle_ready(conn, frames, deliver)).await? {
            break ending;
        }
        conn.flush();
        frames.shed(conn.engine().bytes_wanted());
        if let Some(t) = conn.engine().poll_timeout().map(Instant::from_std) {
            // Only an earlier deadline re-arms: a later one lets the alarm ring early and
            // be re-armed then, so busy connections do not churn the timer wheel.
            if alarm.armed().is_none_or(|armed| t < armed) {
                alarm.arm(t);
            }
        }
        let frame_needs = conn.engine().bytes_wanted();
        let stopping = async {
            match stop.as_mut() {
                Some(rx) => drop(rx.wait_for(|stopped| *stopped).await),
                None => std::future::pending().await,
            }
        };
        let open = conn.engine().is_open();
        // While more than send_buffer bytes wait for the peer (of anything: data, pongs,
        // a close), the peer is not read: TCP flow control pushes back on it, so no peer
        // can grow the queue past send_buffer and one frame.
        let backed_up = conn.engine().is_full();
        tokio::select! {
            read = read(&mut reader, &frames.input, frame_needs), if !backed_up => {
                if !matches!(read, Ok(n) if n > 0) {
                    conn.engine().transport_closed();
                }
            }
            _ = conn.wait_writable(), if backed_up => {}
            _ = stopping, if open => conn.fail(LocalClose::GoingAway),
            _ = conn.kicked() => {}
            _ = alarm.ring() => {
                conn.engine().handle_timeout(runtime::now());
            }
        }
    };
    Box::pin(deliver.ended(&ending)).await?;
    Box::pin(close_down(conn, reader, &ending)).await;
    Ok(())
}

/// After the ending: flushes what is queued (our close frame) and sends FIN — the server
/// closes the TCP connection first (RFC 6455 §7.1.1). When the closing handshake did not
/// complete, unread bytes may still arrive; they are read until the peer closes too, so
/// that our close frame is not lost to a reset.
async fn close_down<R: AsyncRead + Unpin>(conn: &Connection, mut reader: R, ending: &Ending) {
    conn.finish();
    let close_timeout = conn.engine().settings().close_timeout;
    conn.wait_finished(close_timeout).await;
    if !ending.clean {
        let _ = timeout(close_timeout, drain(&mut reader)).await;
    }
    conn.mark_ended();
}

/// Bytes a read takes at most (the size of the thread's read buffer).
const READ_SIZE: usize = 256 << 10;
/// Spare room an input may keep beyond twice what it holds before it is copied smaller.
const SHED_SLACK: usize = 4 << 10;

thread_local! {
    /// The read buffer of this thread's connections. A read lands here and what it
    /// brought is appended to the connection's input, so memory for reading exists once
    /// per thread, not per connection (as in uWebSockets); the copy is cheap next to the
    /// syscall. Borrowed only within one poll, never across an await.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// Reads what the stream has (at most [`READ_SIZE`]) and appends it to `input`, with
/// room for the frame in progress (`frame_needs` more bytes) reserved at once; the
/// number of bytes read, 0 at the end of the stream.
async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    input: &RefCell<BytesMut>,
    frame_needs: usize,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let mut read = ReadBuf::new(&mut buffer);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
            let got = read.filled();
            let mut input = input.borrow_mut();
            let room = frame_needs.saturating_sub(input.len()).max(got.len());
            input.reserve(room);
            input.extend_from_slice(got);
            Poll::Ready(Ok(got.len()))
        })
    })
    .await
}

/// Reads and discards until end of stream.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let nothing = RefCell::new(BytesMut::new());
    while let Ok(n) = read(reader, &nothing, 0).await {
        if n == 0 {
            break;
        }
        nothing.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    //! The loop over `tokio::io::duplex` with tokio's clock paused: a test advances time
    //! only by waiting on the peer's side, so a deadline is checked the instant it passes.
    use super::*;
    use crate::standalone::connection::ConnectionInfo;
    use crate::standalone::transport::WriteSide;
    use bytes::Bytes;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
    use ws_proto::codec::{self, encode_frame, opcode, Decoder, Limits, Role};
    use ws_proto::engine::Settings;

    /// Records what the loop delivers.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl Deliver for Recorder {
        async fn opened(&self) {
            self.0.borrow_mut().push("open".into());
        }
        async fn event(&self, event: Event) -> mlua::Result<()> {
            self.0.borrow_mut().push(match event {
                Event::Message { data, .. } => {
                    format!("message {}", String::from_utf8_lossy(&data))
                }
                Event::TimedOut(why) => format!("timeout {why}"),
                other => format!("{other:?}"),
            });
            Ok(())
        }
        async fn ended(&self, e: &Ending) -> mlua::Result<()> {
            self.0
                .borrow_mut()
                .push(format!("ended {} {}", e.code, e.reason));
            Ok(())
        }
    }

    /// The client's end of the duplex: frames out (masked), frames in.
    struct Peer {
        read: ReadHalf<DuplexStream>,
        write: WriteHalf<DuplexStream>,
        decoder: Decoder,
        input: BytesMut,
    }

    impl Peer {
        async fn send(&mut self, op: u8, payload: &[u8]) {
            let mut out = BytesMut::new();
            encode_frame(&mut out, true, op, payload, Some([1, 2, 3, 4]));
            self.write.write_all(&out).await.unwrap();
        }

        /// The server's next frame; `None` at end of stream.
        async fn next(&mut self) -> Option<codec::Event> {
            loop {
                if let Some(e) = self.decoder.decode(&mut self.input).expect("a valid frame") {
                    return Some(e);
                }
                if self.read.read_buf(&mut self.input).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    /// A server connection on a duplex of `capacity` bytes, its loop started on the
    /// LocalSet; the peer and what was delivered.
    fn serve(settings: Settings, capacity: usize) -> (Rc<Connection>, Peer, Rc<Recorder>) {
        let (conn, peer, recorder, _frames) = serve_framed(settings, capacity);
        (conn, peer, recorder)
    }

    /// [`serve`], with the connection's undecoded input to look at.
    fn serve_framed(
        settings: Settings,
        capacity: usize,
    ) -> (Rc<Connection>, Peer, Rc<Recorder>, Frames) {
        let (ours, theirs) = tokio::io::duplex(capacity);
        let (reader, writer) = tokio::io::split(ours);
        let writer = WriteSide::Stream(Box::new(writer));
        let info = ConnectionInfo {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            host: None,
            port: 1,
            path: "/".into(),
            query: None,
            handler_name: None,
            is_tls: false,
            inbox_bytes: 0,
            subprotocol: None,
            stats: None,
        };
        let conn = Connection::new(info, Role::Server, settings, writer);
        let recorder = Rc::new(Recorder::default());
        let (c, r) = (Rc::clone(&conn), Rc::clone(&recorder));
        let frames = Frames::new(BytesMut::new());
        let f = frames.clone();
        tokio::task::spawn_local(async move {
            drive(&c, reader, &f, &*r, None).await.unwrap();
        });
        let (read, write) = tokio::io::split(theirs);
        let decoder = Decoder::new(Role::Client, Limits::default());
        let peer = Peer {
            read,
            write,
            decoder,
            input: BytesMut::new(),
        };
        (conn, peer, recorder, frames)
    }

    /// A server connection (send_buffer 1 KiB, send_timeout 30 s) on 4 KiB of duplex whose
    /// peer has read nothing: its queue is full.
    async fn backed_up() -> (Rc<Connection>, Peer) {
        let settings = Settings {
            send_buffer: 1024,
            send_timeout: Some(Duration::from_secs(30)),
            ..Settings::default()
        };
        let (conn, peer, _rec) = serve(settings, 4096);
        let block = vec![b'x'; 2048];
        while !conn.engine().is_full() {
            conn.send(opcode::BINARY, &block, false).unwrap();
            tokio::task::yield_now().await;
        }
        (conn, peer)
    }

    fn events(r: &Recorder) -> Vec<String> {
        r.0.borrow().clone()
    }

    async fn paused(test: impl std::future::Future<Output = ()>) {
        runtime::run_local(test).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_delivered_and_a_ping_answered() {
        paused(async {
            let (_conn, mut peer, rec) = serve(Settings::default(), 1 << 16);
            peer.send(opcode::TEXT, b"hello").await;
            peer.send(opcode::PING, b"p").await;
            assert_eq!(peer.next().await, Some(codec::Event::Pong("p".into())));
            assert_eq!(events(&rec)[..2], ["open", "message hello"]);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_holds_no_read_or_write_buffer_after_traffic() {
        paused(async {
            let (conn, mut peer, rec, frames) = serve_framed(Settings::default(), 1 << 20);
            peer.send(opcode::BINARY, &vec![b'x'; 100_000]).await;
            conn.send(opcode::BINARY, &vec![b'y'; 100_000], false)
                .unwrap();
            assert!(
                matches!(peer.next().await, Some(codec::Event::Binary(b)) if b.len() == 100_000)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(events(&rec).len(), 2, "open, then the message");
            assert_eq!(frames.input.borrow().capacity(), 0, "no read buffer kept");
            assert_eq!(conn.engine().outbox_capacity(), 0, "no write buffer kept");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_incomplete_frame_is_kept_in_a_buffer_of_about_its_size() {
        paused(async {
            let (_conn, mut peer, _rec, frames) = serve_framed(Settings::default(), 1 << 20);
            let mut frame = BytesMut::new();
            encode_frame(
                &mut frame,
                true,
                opcode::TEXT,
                &[b'z'; 300],
                Some([1, 2, 3, 4]),
            );
            peer.write.write_all(&frame[..100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            let input = frames.input.borrow();
            assert_eq!(input.len(), 100, "the bytes of the frame so far");
            assert!(
                input.capacity() <= 1024,
                "not a read buffer: {}",
                input.capacity()
            );
        })
        .await;
    }

    /// Echoes every message from the frame loop, as a handler does.
    struct Echo(Rc<Connection>);

    impl Deliver for Echo {
        async fn opened(&self) {}
        async fn event(&self, event: Event) -> mlua::Result<()> {
            if let Event::Message { op, data, .. } = event {
                self.0.send(op, &data, false).unwrap();
            }
            Ok(())
        }
        async fn ended(&self, _: &Ending) -> mlua::Result<()> {
            Ok(())
        }
    }

    /// An echoing server connection on a real loopback TCP socket (plain: its frame
    /// loop writes for itself), and the peer's socket.
    async fn serve_tcp_echo() -> (Rc<Connection>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, addr) = listener.accept().await.unwrap();
        let (reader, writer) = ours.into_split();
        let info = ConnectionInfo {
            id: 1,
            peer: addr,
            host: None,
            port: 1,
            path: "/".into(),
            query: None,
            handler_name: Some("echo".into()),
            is_tls: false,
            inbox_bytes: 0,
            subprotocol: None,
            stats: None,
        };
        let writer = WriteSide::Plain(Rc::new(writer));
        let conn = Connection::new(info, Role::Server, Settings::default(), writer);
        let c = Rc::clone(&conn);
        tokio::task::spawn_local(async move {
            let echo = Echo(Rc::clone(&c));
            drive(&c, reader, &Frames::default(), &echo, None)
                .await
                .unwrap();
        });
        (conn, peer)
    }

    /// Reads `n` frames from the server on `peer`, their payloads.
    async fn read_frames(peer: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<Bytes> {
        let mut decoder = Decoder::new(Role::Client, Limits::default());
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        while got.len() < n {
            match decoder.decode(&mut input).expect("a valid frame") {
                Some(codec::Event::Text(b) | codec::Event::Binary(b)) => got.push(b),
                Some(other) => panic!("unexpected {other:?}"),
                None => assert!(peer.read_buf(&mut input).await.unwrap() > 0, "eof"),
            }
        }
        got
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_by_the_flusher_without_a_burst_task() {
        runtime::run_local(async {
            let (conn, mut peer) = serve_tcp_echo().await;
            let mut requests = BytesMut::new();
            for i in 0..16 {
                let text = format!("request {i}");
                encode_frame(
                    &mut requests,
                    true,
                    opcode::TEXT,
                    text.as_bytes(),
                    Some([7; 4]),
                );
            }
            peer.write_all(&requests).await.unwrap();
            let echoed = read_frames(&mut peer, 16).await;
            let want: Vec<_> = (0..16)
                .map(|i| Bytes::from(format!("request {i}")))
                .collect();
            assert_eq!(echoed, want);
            assert!(!conn.bursting());
            assert_eq!(conn.engine().outbox_capacity(), 0, "no write buffer kept");
        })
        .await;
    }

    #[tokio::test]
    async fn sends_are_written_together_by_the_flusher_with_no_task_of_the_connection() {
        runtime::run_local(async {
            let (conn, mut peer) = serve_tcp_echo().await;
            conn.send(opcode::TEXT, b"one", false).unwrap();
            conn.send(opcode::TEXT, b"two", false).unwrap();
            assert!(
                !conn.bursting(),
                "no burst task: the socket takes them at once"
            );
            assert_eq!(
                conn.engine().queued_bytes(),
                10,
                "queued until the flusher runs"
            );
            assert_eq!(read_frames(&mut peer, 2).await, ["one", "two"]);
            assert!(!conn.bursting());
            conn.send(opcode::TEXT, b"three", false).unwrap();
            assert_eq!(read_frames(&mut peer, 1).await, ["three"]);
            assert_eq!(conn.engine().outbox_capacity(), 0, "no write buffer kept");
        })
        .await;
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_at_once_is_written_by_a_burst_in_order() {
        runtime::run_local(async {
            let (conn, peer) = serve_tcp_echo().await;
            let (mut from_server, mut to_server) = peer.into_split();
            // 256 messages of 64 KiB echoed while the peer reads nothing: more than the
            // kernel's buffers hold, so the loop hands the rest to a burst
            let payload = |i: usize| vec![i as u8; 64 << 10];
            // (the write half is kept until the end: its FIN would end the connection
            // before all the echoes are out)
            let writer = tokio::task::spawn_local(async move {
                for i in 0..256 {
                    let mut frame = BytesMut::new();
                    encode_frame(&mut frame, true, opcode::BINARY, &payload(i), Some([7; 4]));
                    to_server.write_all(&frame).await.unwrap();
                }
                to_server
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(conn.bursting(), "the socket is full: a burst waits on it");
            let echoed = read_frames(&mut from_server, 256).await;
            assert!(echoed
                .iter()
                .enumerate()
                .all(|(i, b)| b[..] == payload(i)[..]));
            let _to_server = writer.await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(
                !conn.bursting(),
                "the burst ended: an idle connection has no task"
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_after_ping_interval_and_closes_1011_without_a_pong() {
        paused(async {
            let settings = Settings {
                ping_interval: Some(Duration::from_secs(30)),
                pong_timeout: Duration::from_secs(10),
                ..Settings::default()
            };
            let (_conn, mut peer, rec) = serve(settings, 1 << 16);
            let start = Instant::now();
            assert!(matches!(peer.next().await, Some(codec::Event::Ping(_))));
            assert_eq!(
                start.elapsed(),
                Duration::from_secs(30),
                "the ping is due at 30 s"
            );
            let close = peer.next().await;
            assert_eq!(
                start.elapsed(),
                Duration::from_secs(40),
                "the close at 30 + 10 s"
            );
            assert_eq!(
                close,
                Some(codec::Event::Close(Some((
                    1011,
                    "keepalive timeout".into()
                ))))
            );
            assert!(events(&rec).contains(&"timeout keepalive timeout".to_string()));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_is_kept_by_a_peer_that_answers_its_pings() {
        paused(async {
            let settings = Settings {
                ping_interval: Some(Duration::from_secs(30)),
                pong_timeout: Duration::from_secs(10),
                ..Settings::default()
            };
            let (conn, mut peer, _rec) = serve(settings, 1 << 16);
            for _ in 0..5 {
                let Some(codec::Event::Ping(p)) = peer.next().await else {
                    panic!("a keepalive ping")
                };
                peer.send(opcode::PONG, &p).await;
            }
            assert!(conn.engine().is_open(), "open after 5 pings, 150 s");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_1000_after_no_data_message_either_way() {
        paused(async {
            let settings = Settings {
                idle_timeout: Some(Duration::from_secs(60)),
                ..Settings::default()
            };
            let (_conn, mut peer, rec) = serve(settings, 1 << 16);
            tokio::time::sleep(Duration::from_secs(50)).await;
            peer.send(opcode::TEXT, b"still here").await; // moves the deadline to 110 s
            let start = Instant::now();
            let close = peer.next().await;
            assert_eq!(
                close,
                Some(codec::Event::Close(Some((1000, "idle timeout".into()))))
            );
            assert_eq!(start.elapsed(), Duration::from_secs(60));
            assert!(events(&rec).contains(&"timeout idle timeout".to_string()));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_unanswered_for_close_timeout_ends_the_connection_1006() {
        paused(async {
            let (conn, mut peer, rec) = serve(Settings::default(), 1 << 16);
            let start = Instant::now();
            conn.close(1000, "bye").unwrap();
            assert_eq!(
                peer.next().await,
                Some(codec::Event::Close(Some((1000, "bye".into()))))
            );
            // the peer never answers: the server gives up after close_timeout (5 s) and
            // sends FIN
            assert_eq!(peer.next().await, None);
            assert!(start.elapsed() >= Duration::from_secs(5));
            assert_eq!(
                events(&rec).last().unwrap(),
                "ended 1006 no close frame in answer to ours"
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_is_given_up_after_send_timeout_with_1008() {
        paused(async {
            let (conn, _peer) = backed_up().await;
            let start = Instant::now();
            assert!(!conn.wait_room().await, "no room ever comes");
            assert_eq!(start.elapsed(), Duration::from_secs(30));
            assert!(!conn.engine().is_open(), "closing with 1008 send timeout");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_again_gets_room_before_send_timeout() {
        paused(async {
            let (conn, mut peer) = backed_up().await;
            let reader = tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(29)).await;
                while peer.next().await.is_some() {}
            });
            assert!(conn.wait_room().await, "room once the peer reads, at 29 s");
            assert!(conn.engine().is_open());
            reader.abort();
        })
        .await;
    }
}
