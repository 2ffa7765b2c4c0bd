//! server: the standalone WebSocket server and its Lua object.
//!
//! Owns the listener and the accept loop, each connection's life (read the Upgrade
//! request, let `ws.accept` judge it, then read frames and call the handler class), and
//! the graceful stop (close 1001 to everyone, wait for the handshakes, drop the rest).
//! Every task here is a local task on the event loop of the Lua state (`runtime`).

use crate::codec::{Limits, Role};
use crate::connection::{Connection, ConnectionInfo, LuaConnection, WriteSide};
use crate::handshake::{parse_request, HeadError, RequestHead};
use crate::http::{header_table, Request, Response};
use crate::routing;
use crate::runtime;
use crate::session::{self, Delivery, Handler, LoopConfig};
use bytes::{Buf, BytesMut};
use mlua::{Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::timeout;

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
    /// Set when the accept loop and every connection have ended.
    done: Cell<bool>,
    done_notify: Notify,
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
        let shared = Rc::new(Shared {
            options,
            local_addr,
            done: Cell::new(false),
            done_notify: Notify::new(),
            stop: watch::Sender::new(false),
            next_id: Cell::new(0),
        });
        let (lua, serving) = (lua.clone(), Rc::clone(&shared));
        runtime::spawn(async move {
            if let Err(e) = serve(lua, Rc::clone(&serving), listener).await {
                serving.log(format_args!("server stopped on an error: {e}"));
            }
            serving.done.set(true);
            serving.done_notify.notify_waiters();
        });
        Ok(Server(shared))
    }
}

impl UserData for Server {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("port", |_, this| Ok(this.0.local_addr.port()));
        fields.add_field_method_get("host", |_, this| Ok(this.0.local_addr.ip().to_string()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // run(): runs the event loop until the server has stopped (stop(), SIGINT or
        // SIGTERM) and its connections are closed; returns true.
        methods.add_method("run", |_, this, ()| {
            let shared = Rc::clone(&this.0);
            runtime::block_on("server:run", async move {
                loop {
                    let done = shared.done_notify.notified();
                    if shared.done.get() {
                        return;
                    }
                    done.await;
                }
            })?;
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
    let writer = Rc::new(writer);
    let info = ConnectionInfo {
        id,
        peer,
        host: peer.ip().to_string(),
        port: peer.port(),
        path,
        handler_name: Some(handler.name.clone()),
        role: Role::Server,
        is_tls: false,
        high_water: opts.send_buffer,
        inbox_bytes: 0,
        close_timeout: opts.close_timeout,
    };
    let conn = Connection::new(info, Some(Rc::clone(&writer)));
    let cfg = LoopConfig { role: Role::Server, limits: opts.limits, close_timeout: opts.close_timeout, log: opts.log };
    let stop = Some(server.stop.subscribe());
    let result = match lua.create_userdata(LuaConnection(Rc::clone(&conn))) {
        Ok(ud) => session::run(&lua, &cfg, reader, WriteSide::Plain(writer), buf, conn, ud, Delivery::Handler(handler), stop).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        server.log(format_args!("{peer}: {e}"));
    }
}

async fn answer(stream: &mut TcpStream, response: &Response) {
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Calls `ws.accept(request, response, uc)`; returns the response to write and, when the
/// upgrade was accepted, the handler class.
async fn call_accept(lua: &Lua, server: &Shared, head: RequestHead, peer: SocketAddr) -> mlua::Result<(Response, Option<Handler>)> {
    let accept: Function = lua.named_registry_value(ACCEPT_KEY)?;
    let uc = lua.create_table_with_capacity(0, 6)?;
    uc.raw_set("headers", header_table(lua, &head.headers)?)?;
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

