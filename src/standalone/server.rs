//! server: the standalone WebSocket server and its Lua object.
//!
//! Owns the listener and the accept loop, each connection's life (read the Upgrade
//! request, let `ws.accept` judge it, then read frames and call the handler class), and
//! the graceful stop (close 1001 to everyone, wait for the handshakes, drop the rest).
//! Every task here is a local task on the event loop of the Lua state (`runtime`).

use crate::lua_api::log::Level;
use crate::lua_api::options::Reader;
use crate::standalone::connection::{Connection, ConnectionInfo};
use crate::standalone::front::{self, answer, Verdict};
use crate::standalone::http::{header_table, Request, Response};
use crate::standalone::lua_connection::{self, connection_userdata};
use crate::standalone::overload;
use crate::standalone::pubsub::{self, Bridge, Deliver};
use crate::standalone::runtime;
use crate::standalone::server_options::Options;
use crate::standalone::session::{self, handler_of, Delivery, Handler, LoopConfig};
use crate::standalone::static_files;
use crate::standalone::stats;
use crate::standalone::stats::{bump, Stats};
use crate::standalone::timers::{self, timeout, timeout_at};
use crate::standalone::topics::{self, Topics};
use crate::standalone::transport::WriteSide;
use crate::standalone::workers::{self, Forked, FromSiblings, Mesh};
use bytes::BytesMut;
use mlua::{
    Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, UserDataRef,
};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use crate::standalone::tls::{self, TlsStream};
use ws_proto::codec::Role;
use ws_proto::deflate::Agreement;
use ws_proto::handshake::RequestHead;

/// Registry name of `ws.accept`, the Lua function that judges every Upgrade request.
pub const ACCEPT_KEY: &str = "service_utils.WS.accept";

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
    /// TCP connections being served (handshaking included), for `max_connections`.
    active: Cell<u64>,
    stats: Rc<Stats>,
    /// Who subscribes to what (`conn:subscribe`, `server:publish`).
    topics: Rc<Topics>,
    /// The other workers (`workers` option), once this worker's loop exists.
    mesh: RefCell<Option<Rc<Mesh>>>,
    /// The other workers' counters as they last sent them, by worker index.
    sibling_counters: RefCell<Vec<Vec<(String, u64)>>>,
}

impl FromSiblings for Shared {
    fn published(&self, topic: &str, op: u8, data: &[u8]) {
        self.topics.publish_local(topic, op, data, None);
    }

    fn counters(&self, worker: usize, counters: Vec<(String, u64)>) {
        let mut all = self.sibling_counters.borrow_mut();
        if all.len() <= worker {
            all.resize(worker + 1, Vec::new());
        }
        all[worker] = counters;
    }

    fn gone(&self, worker: usize) {
        if let Some(counters) = self.sibling_counters.borrow_mut().get_mut(worker) {
            counters.clear();
        }
    }

    fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Forks the workers the options ask for, before the event loop exists; `None` for one.
fn fork_workers(options: &Options) -> mlua::Result<Option<Forked>> {
    if options.workers <= 1 {
        return Ok(None);
    }
    if runtime::started() {
        return Err(mlua::Error::runtime(
            "ws.server: workers must be asked for before anything else of the module runs in this \
             process (a server, a connection, ws.sleep): the event loop cannot be forked",
        ));
    }
    // What stdio holds would be written once per worker.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    workers::fork(options.workers, &options.logger, stop_limit(options))
        .map(Some)
        .map_err(|e| mlua::Error::runtime(format!("ws.server: cannot start the workers: {e}")))
}

/// How long a worker may take to stop: its connections' closing handshakes, and 5 s.
fn stop_limit(options: &Options) -> Duration {
    options.shutdown_timeout.get() + Duration::from_secs(5)
}

/// Joins this worker to the others: publishes and stop travel between them, and its
/// counters go to them every `COUNTERS_EVERY`.
fn start_mesh(shared: &Rc<Shared>, forked: Forked) -> mlua::Result<()> {
    let to: Rc<dyn FromSiblings> = shared.clone();
    let mesh = Mesh::start(forked, Rc::downgrade(&to)).map_err(mlua::Error::external)?;
    shared.topics.set_siblings(Rc::clone(&mesh));
    *shared.mesh.borrow_mut() = Some(Rc::clone(&mesh));
    let (weak, mut stop) = (Rc::downgrade(shared), shared.stop.subscribe());
    runtime::spawn(async move {
        loop {
            tokio::select! {
                _ = timers::sleep(workers::COUNTERS_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let Some(shared) = weak.upgrade() else { return };
            mesh.counters(&shared.counters_here());
        }
    });
    Ok(())
}

impl Shared {
    /// This worker's counters, topics included.
    fn counters_here(&self) -> Vec<(String, u64)> {
        let mut c = self.stats.snapshot();
        c.push(("published".into(), self.topics.published.get()));
        c.push(("publish_dropped".into(), self.topics.dropped.get()));
        c
    }

    /// Stops this server in every worker.
    fn stop_everywhere(&self) {
        self.stop.send_replace(true);
        if let Some(mesh) = self.mesh.borrow().as_ref() {
            mesh.stop_all();
        }
    }

    fn log(&self, level: Level, message: impl std::fmt::Display) {
        self.options.logger.log(level, message);
    }

    /// Counts a refused handshake and logs it.
    fn reject(&self, peer: SocketAddr, reason: &str, detail: impl std::fmt::Display) {
        self.stats.reject(reason);
        self.log(
            Level::Info,
            format_args!("{peer}: handshake refused ({reason}): {detail}"),
        );
    }
}

/// Counts a TCP connection as active while it lives.
struct ActiveGuard(Rc<Shared>);

impl ActiveGuard {
    fn new(shared: &Rc<Shared>) -> Self {
        bump(&shared.active, 1);
        ActiveGuard(Rc::clone(shared))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// The Lua `server` object returned by `ws.server{...}`.
pub struct Server(Rc<Shared>);

impl Server {
    /// Binds the listener at once, so the port is known before `run`.
    pub fn bind(options: Option<Table>, lua: &Lua) -> mlua::Result<Server> {
        let mut options = Options::from_lua(&options.map_or_else(|| lua.create_table(), Ok)?)?;
        let limit = overload::descriptor_limit();
        let cap = overload::connection_cap(options.max_connections, limit);
        if cap < options.max_connections {
            options.logger.log(
                Level::Warn,
                format_args!(
                    "max_connections lowered from {} to {cap}: the descriptor limit (ulimit -n) is {}, less {} kept for the server itself",
                    options.max_connections,
                    limit.unwrap_or_default(),
                    overload::RESERVED_DESCRIPTORS
                ),
            );
            options.max_connections = cap;
        }
        let addr = format!("{}:{}", options.host, options.port);
        let std_listener = std::net::TcpListener::bind(&addr).map_err(|e| {
            mlua::Error::runtime(format!("ws.server: cannot listen on {addr}: {e}"))
        })?;
        std_listener
            .set_nonblocking(true)
            .map_err(mlua::Error::external)?;
        let local_addr = std_listener.local_addr().map_err(mlua::Error::external)?;
        let node_id = pubsub::node_id();
        let forked = fork_workers(&options)?;
        let listener = runtime::enter(|| TcpListener::from_std(std_listener))
            .map_err(mlua::Error::external)?;
        let options_topics = (options.max_topics, options.slow_subscriber);
        let shared = Rc::new(Shared {
            options,
            local_addr,
            done: Cell::new(false),
            done_notify: Notify::new(),
            stop: watch::Sender::new(false),
            next_id: Cell::new(0),
            active: Cell::new(0),
            stats: Rc::new(Stats::default()),
            topics: Rc::new(Topics::new(options_topics.0, options_topics.1)),
            mesh: RefCell::new(None),
            sibling_counters: RefCell::new(Vec::new()),
        });
        topics::register(&shared.topics);
        if let Some(options) = &shared.options.pubsub {
            let deliver: Rc<dyn Deliver> = shared.topics.clone();
            shared.topics.set_bridge(Bridge::start(
                options,
                node_id,
                Rc::downgrade(&deliver),
                shared.stop.subscribe(),
            ));
        }
        if let Some(forked) = forked {
            start_mesh(&shared, forked)?;
        }
        if let Some(module) = &shared.options.worker_init {
            let require: Function = lua.globals().get("require")?;
            require.call::<mlua::Value>(module.as_str()).map_err(|e| {
                mlua::Error::runtime(format!("ws.server: worker_init '{module}' failed: {e}"))
            })?;
        }
        let (lua, serving) = (lua.clone(), Rc::clone(&shared));
        runtime::spawn(async move {
            if let Err(e) = serve(lua, Rc::clone(&serving), listener).await {
                serving.log(
                    Level::Error,
                    format_args!("server stopped on an error: {e}"),
                );
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
        fields.add_field_method_get("is_TLS", |_, this| Ok(this.0.options.tls.is_some()));
        // worker (1..workers) of this process, and how many there are
        fields.add_field_method_get("worker", |_, this| {
            Ok(this.0.mesh.borrow().as_ref().map_or(1, |m| m.index + 1))
        });
        fields.add_field_method_get("workers", |_, this| {
            Ok(this.0.mesh.borrow().as_ref().map_or(1, |m| m.count))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // run([{signals = true}]): runs the event loop until the server has stopped and
        // its connections are closed; returns true. With `signals` (the default), SIGINT
        // and SIGTERM received meanwhile stop it (`stop()`); `signals = false` leaves the
        // process's signal handling alone.
        methods.add_method("run", |_, this, opts: Option<Table>| {
            let signals = match &opts {
                Some(t) => Reader::new(t, "server:run", "").boolean("signals")?,
                None => None,
            } != Some(false);
            let shared = Rc::clone(&this.0);
            runtime::block_on("server:run", run_until_done(shared, signals))??;
            // Worker 0 outlives the others: the supervisor is stopped (it stops the
            // workers it runs) and waited for.
            if let Some(supervisor) = this.0.mesh.borrow().as_ref().and_then(|m| m.supervisor) {
                workers::reap(
                    &[supervisor],
                    stop_limit(&this.0.options) + Duration::from_secs(5),
                );
            }
            Ok(true)
        });
        // stop([timeout]): stop accepting, close every connection with 1001, wait up to
        // `timeout` seconds (default shutdown_timeout) for the closing handshakes.
        methods.add_method("stop", |_, this, wait: Option<f64>| {
            if let Some(s) = wait {
                let d = crate::lua_api::options::seconds_value("server:stop", "timeout", s)?;
                this.0.options.shutdown_timeout.set(d);
            }
            this.0.stop_everywhere();
            Ok(true)
        });
        // stats() -> table of counters (see README)
        methods.add_method("stats", |lua, this, ()| {
            let mut all = this.0.counters_here();
            for sibling in this.0.sibling_counters.borrow().iter() {
                stats::merge(&mut all, sibling);
            }
            let t = stats::to_lua(lua, &all)?;
            t.set(
                "workers",
                this.0.mesh.borrow().as_ref().map_or(1, |m| m.count),
            )?;
            if let Some(p) = this.0.topics.bridge_stats(lua)? {
                t.set("pubsub", p)?;
            }
            Ok(t)
        });
        // publish(topic, data [, {msg_type =, exclude = conn}]) -> number of recipients
        methods.add_method(
            "publish",
            |_, this, (topic, data, opts): (mlua::String, mlua::String, Option<Table>)| {
                lua_connection::publish_from_lua(&[Rc::clone(&this.0.topics)], &topic, &data, opts)
            },
        );
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            let scheme = if this.0.options.tls.is_some() {
                "wss"
            } else {
                "ws"
            };
            Ok(format!("ws_server {scheme}://{}", this.0.local_addr))
        });
    }
}

/// Waits until the server is done; with `signals`, SIGINT and SIGTERM stop it meanwhile.
async fn run_until_done(shared: Rc<Shared>, signals: bool) -> mlua::Result<()> {
    let (mut sigint, mut sigterm) = if signals {
        take_over_sigint();
        (
            Some(signal(SignalKind::interrupt()).map_err(mlua::Error::external)?),
            Some(signal(SignalKind::terminate()).map_err(mlua::Error::external)?),
        )
    } else {
        (None, None)
    };
    async fn received(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => drop(s.recv().await),
            None => std::future::pending().await,
        }
    }
    loop {
        let done = shared.done_notify.notified();
        if shared.done.get() {
            return Ok(());
        }
        tokio::select! {
            _ = done => {}
            _ = received(&mut sigint) => {
                shared.log(Level::Warn, "SIGINT: stopping");
                shared.stop_everywhere();
            }
            _ = received(&mut sigterm) => {
                shared.log(Level::Warn, "SIGTERM: stopping");
                shared.stop_everywhere();
            }
        }
    }
}

/// The stand-alone interpreter (lua.c) handles SIGINT itself while the main chunk runs,
/// by raising "interrupted!" at the next Lua instruction; tokio's handler would chain to
/// it and the error would hit a handler coroutine instead of stopping the server. So the
/// first time a server runs with `signals`, that handler is removed before tokio installs
/// its own: from then on SIGINT stops a running server gracefully and is ignored between
/// runs.
fn take_over_sigint() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction != libc::SIG_IGN
        {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    });
}

/// The accept loop, then the graceful stop.
async fn serve(lua: Lua, shared: Rc<Shared>, listener: TcpListener) -> mlua::Result<()> {
    let mut stop = shared.stop.subscribe();
    let mut tasks = JoinSet::new();
    let mut accept_errors = overload::AcceptErrors::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_errors.succeeded();
                    let _ = stream.set_nodelay(true);
                    tasks.spawn_local(runtime::counted(handle_connection(lua.clone(), Rc::clone(&shared), stream, peer)));
                }
                Err(e) => {
                    if let Some(line) = accept_errors.failed(e, &listener).await {
                        shared.log(Level::Error, line);
                    }
                }
            },
            _ = stop.wait_for(|stopped| *stopped) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    shared.stop.send_replace(true);
    let all_closed = async { while tasks.join_next().await.is_some() {} };
    if timeout(shared.options.shutdown_timeout.get(), all_closed)
        .await
        .is_err()
    {
        shared.log(
            Level::Warn,
            format_args!(
                "stop: dropping {} connections that did not close in time",
                tasks.len()
            ),
        );
    }
    tasks.shutdown().await;
    Ok(())
}

/// A stream a WebSocket can run on once upgraded: split into the session's halves.
trait Upgraded: AsyncRead + AsyncWrite + Unpin {
    fn split_for_session(self) -> (Box<dyn AsyncRead + Unpin>, WriteSide);
}

impl Upgraded for TcpStream {
    fn split_for_session(self) -> (Box<dyn AsyncRead + Unpin>, WriteSide) {
        let (reader, writer) = self.into_split();
        (Box::new(reader), WriteSide::Plain(Rc::new(writer)))
    }
}

impl Upgraded for TlsStream {
    fn split_for_session(self) -> (Box<dyn AsyncRead + Unpin>, WriteSide) {
        let (reader, writer) = self.split();
        (Box::new(reader), WriteSide::Stream(Box::new(writer)))
    }
}

/// One accepted TCP connection: the connection cap, TLS, then the WebSocket.
async fn handle_connection(lua: Lua, server: Rc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _active = ActiveGuard::new(&server);
    let opts = &server.options;
    if server.active.get() > opts.max_connections {
        return Box::pin(refuse_busy(&server, stream, peer)).await;
    }
    let deadline = Instant::now() + opts.handshake_timeout;
    // Boxed, so that this task keeps only the state of the stream it serves (plain or
    // TLS) and not that of the TLS handshake.
    match &opts.tls {
        None => Box::pin(serve_stream(lua, &server, stream, peer, deadline)).await,
        Some(config) => match Box::pin(timeout_at(deadline, tls::accept(config, stream))).await {
            Ok(Ok(tls)) => Box::pin(serve_stream(lua, &server, tls, peer, deadline)).await,
            Ok(Err(e)) => {
                server.stats.reject("tls");
                server.log(
                    Level::Warn,
                    format_args!("{peer}: TLS handshake failed: {e}"),
                );
            }
            Err(_) => server.reject(peer, "timeout", "no TLS handshake within handshake_timeout"),
        },
    }
}

/// Answers 503 to a connection over `max_connections` (boxed by the caller: the
/// response's state is no part of an open connection's).
async fn refuse_busy(server: &Shared, mut stream: TcpStream, peer: SocketAddr) {
    server.reject(peer, "503", "max_connections reached");
    let response = Response::error(503, "Server is at its connection limit; try again later");
    answer(&mut stream, &response).await
}

/// The opening handshake on `stream` (plain or TLS), then the WebSocket until it closes.
/// The handshake's future is boxed and gone once it is over: the one that lives as long
/// as the connection keeps only the connection's state.
async fn serve_stream<S: Upgraded>(
    lua: Lua,
    server: &Rc<Shared>,
    stream: S,
    peer: SocketAddr,
    deadline: Instant,
) {
    let Some((stream, buf, opened)) =
        Box::pin(handshake(&lua, server, stream, peer, deadline)).await
    else {
        return;
    };
    serve_connection(lua, server, stream, buf, peer, opened).await;
}

/// The opening handshake: the request judged, `ws.accept` called, the answer written.
/// The stream, the bytes read past the request and what was settled when the connection
/// opened; `None` when it did not (answered, refused or gone).
async fn handshake<S: Upgraded>(
    lua: &Lua,
    server: &Rc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<(S, BytesMut, Opened)> {
    let opts = &server.options;
    let mut buf = BytesMut::with_capacity(1024);
    let verdict = front::judge_request(
        &mut stream,
        &mut buf,
        opts.max_headers,
        opts.max_header_bytes,
        deadline,
        opts.static_dir.is_some(),
    )
    .await;
    let head = match verdict {
        Verdict::Upgrade(head) => head,
        Verdict::Gone => return None,
        Verdict::TimedOut => {
            server.reject(
                peer,
                "timeout",
                format_args!(
                    "no complete Upgrade request within {:?}; dropped",
                    opts.handshake_timeout
                ),
            );
            return None;
        }
        Verdict::Refuse { response, why } => {
            server.reject(peer, &response.status.to_string(), why);
            answer(&mut stream, &response).await;
            return None;
        }
        Verdict::Static(head) => {
            serve_static(server, &mut stream, peer, &head).await;
            return None;
        }
    };
    let path = head.uri.split('?').next().unwrap_or_default().to_owned();
    let query = head.uri.split_once('?').map(|(_, q)| q.to_owned());
    let (response, handler, deflate) = match call_accept(lua, server, head, peer).await {
        Ok(result) => result,
        Err(e) => {
            server.stats.reject("500");
            server.log(
                Level::Error,
                format_args!("{peer}: ws.accept raised an error: {e}"),
            );
            let response = Response::error(
                500,
                "Internal error while accepting the WebSocket handshake",
            );
            answer(&mut stream, &response).await;
            return None;
        }
    };
    stream.write_all(&response.to_bytes()).await.ok()?;
    let Some(handler) = handler else {
        server.reject(
            peer,
            &response.status.to_string(),
            response.header("X-msg").unwrap_or(""),
        );
        let _ = stream.shutdown().await;
        return None;
    };
    let opened = Opened {
        path,
        query,
        subprotocol: response.header("Sec-WebSocket-Protocol").map(str::to_owned),
        handler,
        deflate,
    };
    Some((stream, buf, opened))
}

/// What the handshake of an accepted connection settled.
struct Opened {
    path: String,
    query: Option<String>,
    subprotocol: Option<String>,
    handler: Rc<Handler>,
    deflate: Option<Agreement>,
}

/// Serves an open connection (its 101 written; `buf`: bytes read after the request)
/// until it ends: counted, logged, its topics left.
async fn serve_connection<S: Upgraded>(
    lua: Lua,
    server: &Rc<Shared>,
    stream: S,
    buf: BytesMut,
    peer: SocketAddr,
    opened: Opened,
) {
    let Opened {
        path,
        query,
        subprotocol,
        handler,
        deflate,
    } = opened;
    let opts = &server.options;
    let id = server.next_id.get() + 1;
    server.next_id.set(id);
    bump(&server.stats.handshakes_accepted, 1);
    bump(&server.stats.open, 1);
    let is_tls = opts.tls.is_some();
    server.log(
        Level::Info,
        format_args!("{peer}: connection #{id} open on {path} ({})", handler.name),
    );
    let (reader, writer) = stream.split_for_session();
    let info = ConnectionInfo {
        id,
        peer,
        host: None,
        port: peer.port(),
        path,
        query,
        handler_name: Some(Rc::clone(&handler.name)),
        is_tls,
        inbox_bytes: 0,
        subprotocol,
        stats: Some(Rc::clone(&server.stats)),
    };
    let conn = Connection::new(info, Role::Server, Arc::clone(&opts.session), writer);
    if let Some(agreement) = deflate {
        conn.engine().use_deflate(agreement);
    }
    let cfg = LoopConfig {
        logger: Rc::clone(&opts.logger),
        stats: Some(Rc::clone(&server.stats)),
    };
    let stop = Some(server.stop.subscribe());
    let result = match connection_userdata(&lua, Rc::clone(&conn), Some(Rc::clone(&server.topics)))
    {
        Ok(ud) => {
            session::run(
                &lua,
                &cfg,
                reader,
                buf,
                Rc::clone(&conn),
                ud,
                Delivery::Handler(handler),
                stop,
            )
            .await
        }
        Err(e) => Err(e),
    };
    server.stats.open.set(server.stats.open.get() - 1);
    server.topics.leave_all(id);
    if let Err(e) = result {
        server.log(Level::Error, format_args!("{peer}: {e}"));
    }
    server.log(Level::Info, format_args!("{peer}: connection #{id} closed"));
}

/// Answers a plain request from the static directory, and logs it.
async fn serve_static<S: AsyncWrite + Unpin>(
    server: &Shared,
    stream: &mut S,
    peer: SocketAddr,
    head: &RequestHead,
) {
    let Some(dir) = &server.options.static_dir else {
        return;
    };
    let since = head.header("If-Modified-Since");
    let reply = dir.answer(&head.method, &head.uri, since.as_deref());
    let status = match &reply {
        static_files::Answer::Whole(r) => r.status,
        static_files::Answer::File { head, .. } => head.status,
    };
    let sent = static_files::send(stream, reply, server.options.session.send_timeout).await;
    let cut = if sent {
        ""
    } else {
        " (cut off: not read within send_timeout)"
    };
    server.log(
        Level::Info,
        format_args!("{peer}: {} {} -> {status}{cut}", head.method, head.uri),
    );
    let _ = stream.shutdown().await;
}

/// Calls `ws.accept(request, response, uc)`; returns the response to write and, when the
/// upgrade was accepted, the handler class and what permessage-deflate agreed, if anything.
async fn call_accept(
    lua: &Lua,
    server: &Shared,
    head: RequestHead,
    peer: SocketAddr,
) -> mlua::Result<(Response, Option<Rc<Handler>>, Option<Agreement>)> {
    let accept: Function = lua.named_registry_value(ACCEPT_KEY)?;
    let uc = lua.create_table_with_capacity(0, 6)?;
    uc.raw_set("headers", header_table(lua, &head.headers)?)?;
    uc.raw_set("peer", peer.to_string())?;
    uc.raw_set("peer_host", peer.ip().to_string())?;
    uc.raw_set("peer_port", peer.port())?;
    let mut parts = head.uri.splitn(2, '?');
    uc.raw_set("path", parts.next().unwrap_or_default())?;
    uc.raw_set("query", parts.next())?;
    let path = head.uri.split(['?', '#']).next().unwrap_or_default();
    let route = server.options.routes.get(path).cloned();
    let request = lua.create_userdata(Request {
        head,
        peer,
        route,
        handler_base: server.options.handler_base.clone(),
        allowed_origins: server.options.origins.clone(),
        compression: server.options.compression,
    })?;
    let response = lua.create_userdata(Response::new())?;
    let (ok, name, class, deflate): (
        bool,
        Option<String>,
        Option<Table>,
        Option<UserDataRef<Agreement>>,
    ) = accept.call_async((request, &response, uc)).await?;
    let response = response.take::<Response>()?;
    let handler = match (ok && response.status == 101, name, class) {
        (true, Some(name), Some(class)) => Some(handler_of(lua, &name, &class)?),
        _ => None,
    };
    Ok((response, handler, deflate.map(|a| *a)))
}
