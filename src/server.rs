//! server: the standalone WebSocket server and its Lua object.
//!
//! Owns the listener and the accept loop, each connection's life (read the Upgrade
//! request, let `ws.accept` judge it, then read frames and call the handler class), and
//! the graceful stop (close 1001 to everyone, wait for the handshakes, drop the rest).
//! Every task here is a local task on the runtime of the Lua state (`runtime`).

use crate::codec::{close_code, opcode, Decoder, Event, Limits, Role};
use crate::connection::{Connection, LuaConnection, State};
use crate::handshake::{parse_request, HeadError, RequestHead};
use crate::http::{header_table, Request, Response};
use crate::routing;
use crate::runtime;
use bytes::{Buf, BytesMut};
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

/// Registry name of `ws.accept`, the Lua function that judges every Upgrade request.
pub const ACCEPT_KEY: &str = "service_utils.WS.accept";

/// Server settings, from the table given to `ws.server{...}`.
pub struct Options {
    /// Address to listen on. Default `127.0.0.1`.
    host: String,
    /// Port; 0 picks a free one (read it back as `server.port`). Default 0.
    port: u16,
    /// Namespace the handler modules live under (`app.ws` + `/chat` → `app.ws.chat`).
    /// Default none; set it so that clients cannot `require` modules outside it.
    handler_base: String,
    /// Message and frame size limits (1009 when exceeded). Default 16 MiB each.
    limits: Limits,
    /// Upgrade request head: most bytes (431 beyond). Default 8 KiB.
    max_header_bytes: usize,
    /// Upgrade request head: most header lines (431 beyond). Default 64.
    max_headers: usize,
    /// Time a client has to send its whole Upgrade request (slowloris). Default 10 s.
    handshake_timeout: Duration,
    /// Time the peer has to answer our close frame before the socket is dropped. Default 5 s.
    close_timeout: Duration,
    /// Time `stop` waits for all closing handshakes before dropping connections. Default 5 s.
    shutdown_timeout: Cell<Duration>,
    /// Queued outbound bytes above which `send` waits for the socket. Default 1 MiB.
    send_buffer: usize,
    /// Whether to log connection errors and handler failures to stderr. Default true.
    log: bool,
}

fn seconds(t: &Table, key: &str, default: f64) -> mlua::Result<Duration> {
    let s: Option<f64> = t.get(key)?;
    let s = s.unwrap_or(default);
    if !(s.is_finite() && s >= 0.0) {
        return Err(mlua::Error::runtime(format!("ws.server: {key} must be a number of seconds >= 0, got {s}")));
    }
    Ok(Duration::from_secs_f64(s))
}

impl Options {
    fn from_lua(t: &Table) -> mlua::Result<Self> {
        let handler_base: String = t.get::<Option<String>>("handler_base")?.unwrap_or_default();
        routing::check_base(&handler_base).map_err(|e| mlua::Error::runtime(format!("ws.server: {e}")))?;
        let default_limits = Limits::default();
        let max_message_size = t.get::<Option<usize>>("max_message_size")?.unwrap_or(default_limits.max_message_size);
        Ok(Options {
            host: t.get::<Option<String>>("host")?.unwrap_or_else(|| "127.0.0.1".into()),
            port: t.get::<Option<u16>>("port")?.unwrap_or(0),
            handler_base,
            limits: Limits {
                max_message_size,
                max_frame_size: t.get::<Option<usize>>("max_frame_size")?.unwrap_or(max_message_size),
            },
            max_header_bytes: t.get::<Option<usize>>("max_header_bytes")?.unwrap_or(8192),
            max_headers: t.get::<Option<usize>>("max_headers")?.unwrap_or(64),
            handshake_timeout: seconds(t, "handshake_timeout", 10.0)?,
            close_timeout: seconds(t, "close_timeout", 5.0)?,
            shutdown_timeout: Cell::new(seconds(t, "shutdown_timeout", 5.0)?),
            send_buffer: t.get::<Option<usize>>("send_buffer")?.unwrap_or(1 << 20),
            log: t.get::<Option<bool>>("log")?.unwrap_or(true),
        })
    }
}

/// State shared by the accept loop, every connection task and the Lua object.
struct Shared {
    options: Options,
    local_addr: SocketAddr,
    /// Taken by `run`; `None` once the server has run.
    listener: RefCell<Option<TcpListener>>,
    /// Flipped to true to stop: the accept loop ends and every connection closes with 1001.
    stop: watch::Sender<bool>,
    /// Serial numbers for connections.
    next_id: Cell<u64>,
}

impl Shared {
    fn log(&self, message: impl std::fmt::Display) {
        if self.options.log {
            eprintln!("service_utils.WS: {message}");
        }
    }
}

/// The Lua `server` object returned by `ws.server{...}`.
pub struct Server(Rc<Shared>);

impl Server {
    /// Binds the listener at once, so the port is known before `run`.
    pub fn bind(options: Option<Table>, lua: &Lua) -> mlua::Result<Server> {
        let options = Options::from_lua(&options.map_or_else(|| lua.create_table(), Ok)?)?;
        let addr = format!("{}:{}", options.host, options.port);
        let std_listener = std::net::TcpListener::bind(&addr)
            .map_err(|e| mlua::Error::runtime(format!("ws.server: cannot listen on {addr}: {e}")))?;
        std_listener.set_nonblocking(true).map_err(mlua::Error::external)?;
        let local_addr = std_listener.local_addr().map_err(mlua::Error::external)?;
        let listener = runtime::enter(|| TcpListener::from_std(std_listener)).map_err(mlua::Error::external)?;
        Ok(Server(Rc::new(Shared {
            options,
            local_addr,
            listener: RefCell::new(Some(listener)),
            stop: watch::Sender::new(false),
            next_id: Cell::new(0),
        })))
    }
}

impl UserData for Server {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("port", |_, this| Ok(this.0.local_addr.port()));
        fields.add_field_method_get("host", |_, this| Ok(this.0.local_addr.ip().to_string()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // run(): serves until stop() or SIGINT/SIGTERM; returns true.
        methods.add_method("run", |lua, this, ()| {
            let listener = this.0.listener.borrow_mut().take().ok_or_else(|| mlua::Error::runtime("server:run: this server has already run; create a new one"))?;
            runtime::block_on("server:run", serve(lua.clone(), Rc::clone(&this.0), listener))??;
            Ok(true)
        });
        // stop([timeout]): stop accepting, close every connection with 1001, wait up to
        // `timeout` seconds (default shutdown_timeout) for the closing handshakes.
        methods.add_method("stop", |_, this, wait: Option<f64>| {
            if let Some(s) = wait {
                if !(s.is_finite() && s >= 0.0) {
                    return Err(mlua::Error::runtime(format!("server:stop: timeout must be a number of seconds >= 0, got {s}")));
                }
                this.0.options.shutdown_timeout.set(Duration::from_secs_f64(s));
            }
            this.0.stop.send_replace(true);
            Ok(true)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(format!("ws_server ws://{}", this.0.local_addr)));
    }
}

/// The stand-alone interpreter (lua.c) handles SIGINT itself while the main chunk runs,
/// by raising "interrupted!" at the next Lua instruction; tokio's handler would chain to
/// it and the error would hit a handler coroutine instead of stopping the server. So the
/// first time a server runs, that handler is removed before tokio installs its own: from
/// then on SIGINT stops a running server gracefully and is ignored between runs.
fn take_over_sigint() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut current) == 0 && current.sa_sigaction != libc::SIG_IGN {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    });
}

/// The accept loop, then the graceful stop.
async fn serve(lua: Lua, shared: Rc<Shared>, listener: TcpListener) -> mlua::Result<()> {
    let mut stop = shared.stop.subscribe();
    take_over_sigint();
    let mut sigint = signal(SignalKind::interrupt()).map_err(mlua::Error::external)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(mlua::Error::external)?;
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn_local(handle_connection(lua.clone(), Rc::clone(&shared), stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    shared.log(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = sigint.recv() => { shared.log("SIGINT: stopping"); break }
            _ = sigterm.recv() => { shared.log("SIGTERM: stopping"); break }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    shared.stop.send_replace(true);
    let all_closed = async { while tasks.join_next().await.is_some() {} };
    if timeout(shared.options.shutdown_timeout.get(), all_closed).await.is_err() {
        shared.log(format_args!("stop: dropping {} connections that did not close in time", tasks.len()));
    }
    tasks.shutdown().await;
    Ok(())
}

/// Why reading the request head stopped short.
enum HeadFailure {
    /// The client went away or timed out: nothing to answer.
    Gone,
    /// Answer with this and close.
    Answer(Response),
}

async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut, opts: &Options) -> Result<RequestHead, HeadFailure> {
    loop {
        match parse_request(buf, opts.max_headers, opts.max_header_bytes) {
            Ok(Some((head, len))) => {
                buf.advance(len);
                return Ok(head);
            }
            Ok(None) => {}
            Err(HeadError::TooLarge) => {
                return Err(HeadFailure::Answer(Response::error(431, "Request header fields too large")));
            }
            Err(HeadError::Malformed(e)) => {
                return Err(HeadFailure::Answer(Response::error(400, &format!("Malformed HTTP request: {e}"))));
            }
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(HeadFailure::Gone),
            Ok(_) => {}
        }
    }
}

/// One accepted TCP connection: handshake, then WebSocket until it closes.
async fn handle_connection(lua: Lua, server: Rc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let opts = &server.options;
    let mut buf = BytesMut::with_capacity(1024);
    let head = match timeout(opts.handshake_timeout, read_head(&mut stream, &mut buf, opts)).await {
        Err(_) => {
            server.log(format_args!("{peer}: no complete Upgrade request within {:?}; dropped", opts.handshake_timeout));
            return;
        }
        Ok(Err(HeadFailure::Gone)) => return,
        Ok(Err(HeadFailure::Answer(response))) => return answer(&mut stream, &response).await,
        Ok(Ok(head)) => head,
    };
    if !head.is_websocket_upgrade() {
        let response = Response::error(426, "This endpoint speaks WebSocket only: send a GET with Upgrade: websocket");
        return answer(&mut stream, &response).await;
    }
    let path = head.uri.split('?').next().unwrap_or_default().to_owned();
    let (response, handler) = match call_accept(&lua, &server, head, peer).await {
        Ok(result) => result,
        Err(e) => {
            server.log(format_args!("{peer}: ws.accept raised an error: {e}"));
            let response = Response::error(500, "Internal error while accepting the WebSocket handshake");
            return answer(&mut stream, &response).await;
        }
    };
    if stream.write_all(&response.to_bytes()).await.is_err() {
        return;
    }
    let Some(handler) = handler else {
        let _ = stream.shutdown().await;
        return;
    };
    let id = server.next_id.get() + 1;
    server.next_id.set(id);
    let (reader, writer) = stream.into_split();
    let conn = Connection::new(id, peer, path, handler.name.clone(), opts.send_buffer, writer);
    if let Err(e) = run_websocket(&lua, &server, reader, buf, conn, handler).await {
        server.log(format_args!("{peer}: {e}"));
    }
}

async fn answer(stream: &mut TcpStream, response: &Response) {
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The handler class of one connection, its functions looked up once.
struct Handler {
    name: String,
    on_open: Option<Function>,
    on_message: Function,
    on_ping: Option<Function>,
    on_pong: Option<Function>,
    on_close: Option<Function>,
}

impl Handler {
    fn from_table(name: String, t: &Table) -> mlua::Result<Self> {
        Ok(Handler {
            on_open: t.get("handle_open")?,
            on_message: t.get("handle_message").map_err(|_| mlua::Error::runtime(format!("handler '{name}' has no handle_message function")))?,
            on_ping: t.get("handle_ping")?,
            on_pong: t.get("handle_pong")?,
            on_close: t.get("handle_close")?,
            name,
        })
    }
}

/// Calls `ws.accept(request, response, uc)`; returns the response to write and, when the
/// upgrade was accepted, the handler class.
async fn call_accept(lua: &Lua, server: &Shared, head: RequestHead, peer: SocketAddr) -> mlua::Result<(Response, Option<Handler>)> {
    let accept: Function = lua.named_registry_value(ACCEPT_KEY)?;
    let uc = lua.create_table_with_capacity(0, 6)?;
    uc.raw_set("headers", header_table(lua, &head)?)?;
    uc.raw_set("peer", peer.to_string())?;
    uc.raw_set("peer_host", peer.ip().to_string())?;
    uc.raw_set("peer_port", peer.port())?;
    let mut parts = head.uri.splitn(2, '?');
    uc.raw_set("path", parts.next().unwrap_or_default())?;
    uc.raw_set("query", parts.next())?;
    let request = lua.create_userdata(Request { head, peer, handler_base: server.options.handler_base.clone() })?;
    let response = lua.create_userdata(Response::new())?;
    let (ok, name, class): (bool, Option<String>, Option<Table>) = accept.call_async((request, &response, uc)).await?;
    let response = response.take::<Response>()?;
    let handler = match (ok && response.status == 101, name, class) {
        (true, Some(name), Some(class)) => Some(Handler::from_table(name, &class)?),
        _ => None,
    };
    Ok((response, handler))
}

/// How a connection ended, for `handle_close`: the peer's close code and reason, 1005
/// for a close frame without a code, 1006 when no close frame came.
struct Ending {
    code: u16,
    reason: String,
    /// Whether the peer's close frame arrived (the closing handshake completed).
    clean: bool,
}

impl Ending {
    fn abnormal(reason: &str) -> Self {
        Ending { code: close_code::ABNORMAL, reason: reason.to_owned(), clean: false }
    }
}

/// One upgraded connection as the frame loop sees it.
struct Session<'a> {
    lua: &'a Lua,
    server: &'a Shared,
    conn: &'a Rc<Connection>,
    conn_ud: AnyUserData,
    handler: &'a Handler,
}

impl Session<'_> {
    /// Runs one handler function in its own coroutine. A Lua error is logged with the
    /// handler's name and closes this connection with 1011; nothing else is affected.
    async fn call(&self, f: &Function, what: &str, arg: impl IntoLuaMulti) {
        if let Err(e) = f.call_async::<()>(arg).await {
            let c = self.conn;
            self.server.log(format_args!("handler '{}' failed in {what} on connection #{} ({}): {e}", self.handler.name, c.id, c.peer));
            c.queue_close(Some((close_code::INTERNAL_ERROR, "handler error")));
        }
    }

    /// Delivers one event. Returns how the connection ended once a close frame arrived.
    async fn dispatch(&self, event: Event) -> mlua::Result<Option<Ending>> {
        let h = self.handler;
        match event {
            Event::Text(data) | Event::Binary(data) if self.conn.state() != State::Open => drop(data),
            Event::Text(data) => {
                let msg = message_table(self.lua, &self.conn_ud, opcode::TEXT, &data)?;
                self.call(&h.on_message, "handle_message", msg).await;
            }
            Event::Binary(data) => {
                let msg = message_table(self.lua, &self.conn_ud, opcode::BINARY, &data)?;
                self.call(&h.on_message, "handle_message", msg).await;
            }
            Event::Ping(data) => {
                self.conn.queue_pong(&data);
                if let Some(f) = &h.on_ping {
                    self.call(f, "handle_ping", message_table(self.lua, &self.conn_ud, opcode::PING, &data)?).await;
                }
            }
            Event::Pong(data) => {
                if let Some(f) = &h.on_pong {
                    self.call(f, "handle_pong", message_table(self.lua, &self.conn_ud, opcode::PONG, &data)?).await;
                }
            }
            Event::Close(status) => {
                // Echo the peer's code (§5.5.1); a close without a code is answered without one.
                self.conn.queue_close(status.as_ref().map(|(code, _)| (*code, "")));
                let (code, reason) = status.unwrap_or((close_code::NO_STATUS, String::new()));
                return Ok(Some(Ending { code, reason, clean: true }));
            }
        }
        Ok(None)
    }
}

/// The frame loop of an upgraded connection, then its closing.
async fn run_websocket(lua: &Lua, server: &Shared, mut reader: OwnedReadHalf, mut rbuf: BytesMut, conn: Rc<Connection>, handler: Handler) -> mlua::Result<()> {
    let opts = &server.options;
    let mut writer_task = tokio::task::spawn_local(Rc::clone(&conn).write_loop());
    let conn_ud = lua.create_userdata(LuaConnection(Rc::clone(&conn)))?;
    let session = Session { lua, server, conn: &conn, conn_ud, handler: &handler };
    if let Some(f) = &handler.on_open {
        session.call(f, "handle_open", session.conn_ud.clone()).await;
    }
    let mut stop = server.stop.subscribe();
    let mut decoder = Decoder::new(Role::Server, opts.limits);
    let mut close_deadline: Option<Instant> = None;
    let mut read_sizer = ReadSizer::new();
    let ending = loop {
        match decoder.decode(&mut rbuf) {
            Ok(Some(event)) => {
                if let Some(ending) = session.dispatch(event).await? {
                    break ending;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                server.log(format_args!("connection #{} ({}): protocol error: {e}", conn.id, conn.peer));
                conn.queue_close(Some((e.close_code, e.reason)));
                break Ending::abnormal(e.reason);
            }
        }
        if conn.state() != State::Open && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + opts.close_timeout);
        }
        let offered = read_sizer.prepare(&mut rbuf, decoder.bytes_wanted());
        tokio::select! {
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break Ending::abnormal("connection dropped without a close frame"),
                Ok(n) => read_sizer.after_read(n, offered),
            },
            _ = stop.wait_for(|stopped| *stopped), if conn.state() == State::Open => {
                conn.queue_close(Some((close_code::GOING_AWAY, "server shutting down")));
            }
            _ = sleep_until(close_deadline.unwrap_or_else(Instant::now)), if close_deadline.is_some() => {
                break Ending::abnormal("no close frame in answer to ours");
            }
        }
    };
    if let Some(f) = &handler.on_close {
        let msg = message_table(lua, &session.conn_ud, opcode::CLOSE, ending.reason.as_bytes())?;
        msg.raw_set("code", ending.code)?;
        msg.raw_set("reason", ending.reason.as_str())?;
        session.call(f, "handle_close", msg).await;
    }
    // Flush what is queued (our close frame) and send FIN: the server closes the TCP
    // connection first (RFC 6455 §7.1.1). When the handshake did not complete, unread
    // bytes may still arrive; read them until the peer closes too, so that our close
    // frame is not lost to a reset.
    conn.finish();
    if timeout(opts.close_timeout, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    if !ending.clean {
        let _ = timeout(opts.close_timeout, drain(&mut reader)).await;
    }
    Ok(())
}

/// How much room each read offers. At least what the frame in progress still needs (its
/// size was checked against the limits from its header), reserved at once; beyond that
/// 4 KiB, doubling up to 256 KiB while reads fill what was offered, so that a busy
/// connection takes many frames per syscall and a quiet one holds little. A large buffer
/// is released once it is empty and traffic has slowed down again.
struct ReadSizer {
    hint: usize,
}

impl ReadSizer {
    const MIN: usize = 4 << 10;
    const MAX: usize = 256 << 10;

    fn new() -> Self {
        ReadSizer { hint: Self::MIN }
    }

    /// Makes room in `buf` for the next read; returns the room offered.
    fn prepare(&self, buf: &mut BytesMut, frame_needs: usize) -> usize {
        if buf.is_empty() && self.hint == Self::MIN && buf.capacity() > Self::MAX {
            *buf = BytesMut::new();
        }
        buf.reserve(frame_needs.saturating_sub(buf.len()).max(self.hint));
        buf.capacity() - buf.len()
    }

    fn after_read(&mut self, n: usize, offered: usize) {
        if n >= offered {
            self.hint = (self.hint * 2).min(Self::MAX);
        } else if n < self.hint / 4 {
            self.hint = (self.hint / 2).max(Self::MIN);
        }
    }
}

/// Reads and discards until end of stream.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = [0u8; 4096];
    while let Ok(n) = reader.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}

/// Builds the `msg` table handed to handler functions: the original fields (`op_code`,
/// `flags`, `payload_len`, `buf`, `_ss`) plus `data` and `conn`.
fn message_table(lua: &Lua, conn: &AnyUserData, op: u8, payload: &[u8]) -> mlua::Result<Table> {
    let msg = lua.create_table_with_capacity(0, 7)?;
    let data = lua.create_string(payload)?;
    msg.raw_set("op_code", op)?;
    msg.raw_set("flags", 0x80 | op)?;
    msg.raw_set("payload_len", payload.len())?;
    msg.raw_set("buf", &data)?;
    msg.raw_set("data", data)?;
    msg.raw_set("_ss", conn)?;
    msg.raw_set("conn", conn)?;
    Ok(msg)
}
