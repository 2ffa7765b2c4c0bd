//! tls: the `wss://` server's TLS, on rustls' unbuffered API, so that an idle connection
//! keeps no TLS buffer (rustls' own buffered stream keeps 4 KiB of read buffer each).
//! Ciphertext is read into the thread's one buffer and only an incomplete record is kept
//! per connection; decrypted data is kept only until it is read; what is encrypted is
//! written at once and only what the socket did not take is kept.
//!
//! [`accept`] runs the handshake; the [`TlsStream`] it returns reads and writes
//! application data, and its [`split`](TlsStream::split) halves (the frame loop reads, a
//! burst task writes) share the one state. Messages rustls makes while reading (a key
//! update's answer) are sent at once when the socket takes them, else before the next
//! write.

use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Ciphertext one read takes at most (the size of the thread's TLS read buffer).
const READ_SIZE: usize = 64 << 10;
/// Application data one write encrypts at most (what a connection may hold unsent).
const WRITE_CHUNK: usize = 64 << 10;

thread_local! {
    /// The TLS read buffer of this thread's connections (a read's records are decrypted
    /// here; an incomplete one is copied to its connection). Borrowed within one poll.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// A TLS server connection after its handshake (or its two halves).
pub struct TlsStream(Rc<RefCell<Tls>>);

struct Tls {
    conn: UnbufferedServerConnection,
    socket: TcpStream,
    /// Ciphertext received and not yet processed: at most an incomplete record.
    incoming: Vec<u8>,
    /// TLS bytes made and not yet sent.
    outgoing: Vec<u8>,
    /// Application data decrypted and not yet read, of which `taken` bytes were read.
    plaintext: Vec<u8>,
    taken: usize,
    /// The peer sent close_notify or ended the stream: nothing more will be read.
    peer_closed: bool,
    /// The reader, when data was decrypted while writing (see [`Tls::process`]).
    reader: Option<Waker>,
    /// Our close_notify is made.
    closing: bool,
}

/// What to do once rustls lets us write.
enum Action<'a> {
    Nothing,
    Encrypt(&'a [u8]),
    CloseNotify,
}

/// The TLS handshake on `socket` as the server of `config`.
pub async fn accept(config: &Arc<ServerConfig>, socket: TcpStream) -> io::Result<TlsStream> {
    let conn = UnbufferedServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
    let mut tls = Tls {
        conn,
        socket,
        incoming: Vec::new(),
        outgoing: Vec::new(),
        plaintext: Vec::new(),
        taken: 0,
        peer_closed: false,
        reader: None,
        closing: false,
    };
    loop {
        tls.process_incoming(Action::Nothing)?;
        let unsent = std::mem::take(&mut tls.outgoing);
        tls.socket.write_all(&unsent).await?;
        if !tls.conn.is_handshaking() {
            break;
        }
        if tls.peer_closed {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed during the TLS handshake"));
        }
        let mut more = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut tls.socket, &mut more).await?;
        if n == 0 {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed during the TLS handshake"));
        }
        tls.incoming.extend_from_slice(&more[..n]);
    }
    tls.incoming.shrink_to_fit();
    Ok(TlsStream(Rc::new(RefCell::new(tls))))
}

impl TlsStream {
    /// The reading and the writing half (the same connection).
    pub fn split(self) -> (TlsStream, TlsStream) {
        (TlsStream(Rc::clone(&self.0)), self)
    }
}

impl Tls {
    /// Runs rustls over what was received until it wants more (or, with `action`, until
    /// the action is done): decrypted data goes to `plaintext`, TLS bytes to `outgoing`.
    fn process_incoming(&mut self, action: Action<'_>) -> io::Result<()> {
        let mut input = std::mem::take(&mut self.incoming);
        let processed = self.process(&mut input, action);
        if let Ok(used) = processed {
            input.drain(..used);
        }
        self.incoming = input;
        processed.map(drop)
    }

    /// [`process_incoming`](Self::process_incoming) over `input`; the bytes of it used up
    /// (the rest, an incomplete record, goes first next time).
    fn process(&mut self, input: &mut [u8], action: Action<'_>) -> io::Result<usize> {
        let mut used = 0;
        loop {
            let status = self.conn.process_tls_records(&mut input[used..]);
            let discard = status.discard;
            let mut done = false;
            match status.state.map_err(tls_error)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    if let Some(reader) = self.reader.take() {
                        reader.wake();
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + 4096, 0);
                    let n = match encode.encode(&mut self.outgoing[start..]) {
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => {
                            self.outgoing.resize(start + required_size, 0);
                            encode.encode(&mut self.outgoing[start..])
                        }
                        other => other,
                    }
                    .map_err(|e| io::Error::other(e.to_string()))?;
                    self.outgoing.truncate(start + n);
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match action {
                        Action::Nothing => {}
                        Action::Encrypt(data) => {
                            let start = self.outgoing.len();
                            let room = data.len() + (data.len() / 16384 + 1) * 64;
                            self.outgoing.resize(start + room, 0);
                            let n = match traffic.encrypt(data, &mut self.outgoing[start..]) {
                                Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                    required_size,
                                })) => {
                                    self.outgoing.resize(start + required_size, 0);
                                    traffic.encrypt(data, &mut self.outgoing[start..])
                                }
                                other => other,
                            }
                            .map_err(|e| io::Error::other(e.to_string()))?;
                            self.outgoing.truncate(start + n);
                        }
                        Action::CloseNotify => {
                            let start = self.outgoing.len();
                            self.outgoing.resize(start + 64, 0);
                            let n = traffic
                                .queue_close_notify(&mut self.outgoing[start..])
                                .map_err(|e| io::Error::other(e.to_string()))?;
                            self.outgoing.truncate(start + n);
                        }
                    }
                    done = true;
                }
                ConnectionState::BlockedHandshake => done = true,
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    if !matches!(action, Action::Nothing) {
                        return Err(io::Error::new(ErrorKind::BrokenPipe, "TLS connection closed"));
                    }
                    done = true;
                }
                _ => done = true,
            }
            used += discard;
            if done {
                return Ok(used);
            }
        }
    }

    /// Sends what is made and unsent, waiting for the socket (the writer).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, &self.outgoing))?;
            if n == 0 {
                return Poll::Ready(Err(ErrorKind::WriteZero.into()));
            }
            self.outgoing.drain(..n);
        }
        self.outgoing = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Sends what the socket takes now, without waiting (nor taking the writer's wakeup).
    fn send_now(&mut self) -> io::Result<()> {
        while !self.outgoing.is_empty() {
            match self.socket.try_write(&self.outgoing) {
                Ok(n) => drop(self.outgoing.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        Ok(())
    }

    /// Reads what the socket has and decrypts it (at the end of the stream, notes it).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        READ_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let n = {
                let mut read = ReadBuf::new(&mut buffer[..]);
                ready!(Pin::new(&mut self.socket).poll_read(cx, &mut read))?;
                read.filled().len()
            };
            if n == 0 {
                self.peer_closed = true;
                return Poll::Ready(Ok(()));
            }
            if self.incoming.is_empty() {
                // the usual case: whole records, decrypted where they were read
                let used = self.process(&mut buffer[..n], Action::Nothing)?;
                self.incoming.extend_from_slice(&buffer[used..n]);
            } else {
                self.incoming.extend_from_slice(&buffer[..n]);
                self.process_incoming(Action::Nothing)?;
                self.incoming.shrink_to_fit();
            }
            self.send_now()?;
            Poll::Ready(Ok(()))
        })
    }
}

/// A rustls error as an I/O error (the connection ends with it).
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut tls = self.0.borrow_mut();
        loop {
            if tls.taken < tls.plaintext.len() {
                let n = buf.remaining().min(tls.plaintext.len() - tls.taken);
                let from = tls.taken;
                buf.put_slice(&tls.plaintext[from..from + n]);
                tls.taken += n;
                if tls.taken == tls.plaintext.len() {
                    tls.plaintext = Vec::new();
                    tls.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if tls.peer_closed {
                return Poll::Ready(Ok(()));
            }
            tls.reader = Some(cx.waker().clone());
            ready!(tls.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut tls = self.0.borrow_mut();
        ready!(tls.poll_send(cx))?;
        let data = &data[..data.len().min(WRITE_CHUNK)];
        tls.process_incoming(Action::Encrypt(data))?;
        tls.send_now()?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut tls = self.0.borrow_mut();
        if !tls.closing {
            tls.closing = true;
            tls.process_incoming(Action::CloseNotify)?;
        }
        ready!(tls.poll_send(cx))?;
        Pin::new(&mut tls.socket).poll_shutdown(cx)
    }
}
