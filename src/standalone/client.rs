//! client: `ws.connect(inputs)` — URL, TCP, TLS, the opening handshake, then the frame
//! loop (`session`) delivering to a `msg_handler` module or to the connection's inbox.
//!
//! Misuse (a missing or mistyped input) raises an error naming the input; everything the
//! network or the server does wrong is returned as `nil, message`.

use crate::lua_api::connect_inputs::{ConnectInputs, Runtime};
use crate::lua_api::log::{Level, Logger};
use crate::standalone::connection::{Connection, ConnectionInfo};
use crate::standalone::front::{read_head, HeadReadError};
use crate::standalone::http::header_table;
use crate::standalone::lua_connection::connection_userdata;
use crate::standalone::proxy;
use crate::standalone::session::{self, handler_of, Delivery, Handler, LoopConfig};
use crate::standalone::transport::WriteSide;
use bytes::BytesMut;
use mlua::{AnyUserData, Function, Lua, Table, Value};
use std::cell::Cell;
use std::rc::Rc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_proto::codec::Role;
use ws_proto::deflate;
use ws_proto::handshake::{self, header_value, parse_response, HeadError, ResponseHead};
use ws_proto::random;
use ws_proto::url::Url;

/// Why `ws.connect` produced no connection: `nil, message, kind` for Lua. The kind is a
/// stable word a program can act on: "dns", "refused", "io", "timeout", "tls", "closed"
/// (the server closed during the handshake), "handshake" (the server's answer was not a
/// valid 101), "handler" (the `msg_handler` module).
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

fn fail(kind: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
    }
}

/// Loads the `msg_handler` module as a handler class.
fn load_handler(lua: &Lua, name: &str) -> Result<Rc<Handler>, Failure> {
    let loaded = lua
        .globals()
        .get::<Function>("require")
        .and_then(|require| require.call::<Value>(name));
    let class = loaded.map_err(|e| {
        fail(
            "handler",
            format!("connect: msg_handler module '{name}' failed to load: {e}"),
        )
    })?;
    let Value::Table(class) = class else {
        return Err(fail(
            "handler",
            format!("connect: msg_handler module '{name}' is not a table"),
        ));
    };
    handler_of(lua, name, &class).map_err(|e| fail("handler", format!("connect: {e}")))
}

/// Sends the Upgrade request and reads the answer; returns it with the bytes read past it.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    url: &Url,
    key: &str,
    headers: &[(String, String)],
) -> Result<(ResponseHead, BytesMut), Failure> {
    let default_port = if url.secure { 443 } else { 80 };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host_header = if url.port == default_port {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    let request = handshake::client_request(&url.target, &host_header, key, headers);
    stream.write_all(request.as_bytes()).await.map_err(|e| {
        fail(
            "io",
            format!(
                "connect: sending the handshake to {}:{} failed: {e}",
                url.host, url.port
            ),
        )
    })?;
    let mut buf = BytesMut::with_capacity(1024);
    match read_head(stream, &mut buf, |b| parse_response(b, 64, 16 << 10)).await {
        Ok(head) => Ok((head, buf)),
        Err(HeadReadError::Head(HeadError::TooLarge)) => Err(fail(
            "handshake",
            "connect: handshake response head is too large",
        )),
        Err(HeadReadError::Head(HeadError::Malformed(e))) => Err(fail(
            "handshake",
            format!("connect: handshake response is not HTTP: {e}"),
        )),
        Err(HeadReadError::Closed) => Err(fail(
            "closed",
            format!(
                "connect: {}:{} closed the connection during the handshake",
                url.host, url.port
            ),
        )),
        Err(HeadReadError::Io(e)) => Err(fail(
            "io",
            format!(
                "connect: reading the handshake response from {}:{} failed: {e}",
                url.host, url.port
            ),
        )),
    }
}

/// A server's answer other than 101: its `X-msg` (the original server's message) or its
/// status line.
fn refusal(head: &ResponseHead) -> Failure {
    fail("handshake", handshake::refusal(head))
}

async fn tcp_connect(url: &Url) -> Result<TcpStream, Failure> {
    let addrs: Vec<_> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| {
            fail(
                "dns",
                format!("connect: cannot resolve host '{}': {e}", url.host),
            )
        })?
        .collect();
    let mut last = fail(
        "dns",
        format!("connect: no address found for host '{}'", url.host),
    );
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    "refused"
                } else {
                    "io"
                };
                last = fail(
                    kind,
                    format!("connect: cannot connect to {}:{}: {e}", url.host, url.port),
                );
            }
        }
    }
    Err(last)
}

fn tls_connector(inputs: &ConnectInputs) -> Result<tokio_native_tls::TlsConnector, Failure> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &inputs.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| fail("tls", format!("connect: cannot read ca_file '{path}': {e}")))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            fail(
                "tls",
                format!("connect: ca_file '{path}' is not a PEM certificate: {e}"),
            )
        })?;
        builder.add_root_certificate(cert);
    }
    if !inputs.verify {
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map(Into::into)
        .map_err(|e| fail("tls", format!("connect: cannot set up TLS: {e}")))
}

thread_local! {
    /// Serial numbers of client connections, for logs and `tostring`.
    static NEXT_CLIENT_ID: Cell<u64> = const { Cell::new(0) };
}

/// An opened client stream after its handshake: the read and write halves, the
/// server's answer, the bytes read after it, and the server's address.
struct Reached {
    reader: Box<dyn AsyncRead + Unpin>,
    writer: WriteSide,
    head: ResponseHead,
    rest: BytesMut,
    peer: std::net::SocketAddr,
}

/// Reaches the server (directly or through the proxy the inputs or the environment
/// name), over TLS for a secure URL, and sends the Upgrade request with `key` and
/// `headers`.
async fn reach(
    inputs: &ConnectInputs,
    key: &str,
    headers: &[(String, String)],
) -> Result<Reached, Failure> {
    let url = &inputs.url;
    let proxy = match &inputs.proxy {
        Some(choice) => choice.clone(),
        None => proxy::from_env(url.secure, &url.host, url.port, |k| std::env::var(k).ok())
            .transpose()
            .map_err(|e| fail("proxy", format!("connect: {e} (from the environment)")))?,
    };
    let tcp = match &proxy {
        Some(p) => proxy::tunnel(p, &url.host, url.port)
            .await
            .map_err(|e| fail(e.kind, e.message))?,
        None => tcp_connect(url).await?,
    };
    let peer = tcp
        .peer_addr()
        .map_err(|e| fail("io", format!("connect: {e}")))?;
    let (reader, writer, head, rest): (Box<dyn AsyncRead + Unpin>, _, _, _) = if url.secure {
        let connector = tls_connector(inputs)?;
        let mut tls = connector.connect(&url.host, tcp).await.map_err(|e| {
            fail(
                "tls",
                format!(
                    "connect: TLS handshake with {}:{} failed: {e}",
                    url.host, url.port
                ),
            )
        })?;
        let (head, rest) = handshake(&mut tls, url, key, headers).await?;
        let (r, w) = tokio::io::split(tls);
        (Box::new(r), WriteSide::Stream(Box::new(w)), head, rest)
    } else {
        let mut tcp = tcp;
        let (head, rest) = handshake(&mut tcp, url, key, headers).await?;
        let (r, w) = tcp.into_split();
        (Box::new(r), WriteSide::Plain(Rc::new(w)), head, rest)
    };
    Ok(Reached {
        reader,
        writer,
        head,
        rest,
        peer,
    })
}

/// The whole of `ws.connect` after its inputs were checked: network, handshake, and the
/// frame loop started. `Err` is the message returned to Lua with `nil`.
async fn open(
    lua: &Lua,
    inputs: ConnectInputs,
    handler: Option<Rc<Handler>>,
) -> Result<(AnyUserData, u16, Table), Failure> {
    let url = &inputs.url;
    let mut random = [0u8; 16];
    random::fill(&mut random);
    let key = handshake::client_key(random);
    let mut headers = inputs.headers.clone();
    if let Some(cfg) = &inputs.compression {
        headers.push((
            "Sec-WebSocket-Extensions".into(),
            deflate::client_offer(cfg),
        ));
    }
    let Reached {
        reader,
        writer,
        head,
        rest,
        peer,
    } = reach(&inputs, &key, &headers).await?;
    if head.status != 101 {
        return Err(refusal(&head));
    }
    handshake::check_response(&head, &key).map_err(|m| fail("handshake", m))?;
    let extensions = header_value(&head.headers, "Sec-WebSocket-Extensions");
    let deflate = deflate::client_accept(extensions.as_deref(), inputs.compression.as_ref())
        .map_err(|e| fail("handshake", format!("connect: {e}")))?;
    let id = NEXT_CLIENT_ID.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let info = ConnectionInfo {
        id,
        peer,
        host: Some(url.host.clone()),
        port: url.port,
        path: url.target.clone(),
        query: None,
        handler_name: handler.as_ref().map(|h| Rc::clone(&h.name)),
        is_tls: url.secure,
        inbox_bytes: inputs.session.limits.max_message_size,
        subprotocol: header_value(&head.headers, "Sec-WebSocket-Protocol"),
        stats: None,
    };
    let conn = Connection::new(info, Role::Client, inputs.session, writer);
    if let Some(agreement) = deflate {
        conn.engine().use_deflate(agreement);
    }
    let ud =
        connection_userdata(lua, Rc::clone(&conn), None).map_err(|e| fail("io", e.to_string()))?;
    let headers = header_table(lua, &head.headers).map_err(|e| fail("io", e.to_string()))?;
    let cfg = LoopConfig {
        logger: Rc::new(Logger::stderr()),
        stats: None,
    };
    let delivery = handler.map_or(Delivery::Inbox, Delivery::Handler);
    let (lua2, ud2) = (lua.clone(), ud.clone());
    crate::standalone::runtime::spawn(async move {
        if let Err(e) =
            session::run(&lua2, &cfg, reader, rest, conn, ud2, delivery, None).await
        {
            cfg.logger
                .log(Level::Error, format_args!("client connection #{id}: {e}"));
        }
    });
    Ok((ud, head.status, headers))
}

/// `ws.connect(inputs) -> connection, status, headers | nil, message, kind`
pub async fn connect(lua: Lua, inputs: Table) -> mlua::Result<(Value, Value, Value)> {
    let inputs = ConnectInputs::from_lua(&inputs, Runtime::Standalone)?;
    let limit = inputs.timeout;
    let where_to = format!("{}:{}", inputs.url.host, inputs.url.port);
    let result = match &inputs.msg_handler {
        Some(name) => load_handler(&lua, name).map(Some),
        None => Ok(None),
    };
    let result = match result {
        Err(failure) => Err(failure),
        Ok(handler) => {
            crate::standalone::runtime::wait("ws.connect", async {
                match crate::standalone::timers::timeout(limit, open(&lua, inputs, handler)).await {
                    Ok(r) => r,
                    Err(_) => Err(fail(
                        "timeout",
                        format!(
                            "connect: timed out after {} s connecting to {where_to}",
                            limit.as_secs_f64()
                        ),
                    )),
                }
            })
            .await?
        }
    };
    Ok(match result {
        Ok((conn, status, headers)) => (
            Value::UserData(conn),
            Value::Integer(status as i64),
            Value::Table(headers),
        ),
        Err(f) => (
            Value::Nil,
            Value::String(lua.create_string(f.message)?),
            Value::String(lua.create_string(f.kind)?),
        ),
    })
}
