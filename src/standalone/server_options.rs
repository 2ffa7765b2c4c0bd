//! server_options: the options of `ws.server{...}` — their defaults, their reading (with
//! the one option reader, `options`), the TLS acceptor built from PEM files, the routes —
//! each with the attack it stops. The connections' own settings are `engine::Settings`.

use crate::lua_api::log::Logger;
use crate::lua_api::options::{self, Reader};
use crate::standalone::pubsub::{self, PubsubOptions, Redis};
use crate::standalone::static_files;
use crate::standalone::topics::SlowSubscriber;
use mlua::{Table, Value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use ws_proto::deflate;
use ws_proto::engine::{Settings, SERVER_PING_INTERVAL};
use ws_proto::routing;
use ws_proto::subscriptions::DEFAULT_MAX_TOPICS;

/// Defaults of the server's own options (the connections' are [`Settings`]'s).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 8192;
pub const DEFAULT_MAX_HEADERS: u64 = 64;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// Server settings, from the table given to `ws.server{...}`.
pub struct Options {
    /// Address to listen on. Default `127.0.0.1`.
    pub host: String,
    /// Port; 0 picks a free one (read it back as `server.port`). Default 0.
    pub port: u16,
    /// Namespace the handler modules live under (`app.ws` + `/chat` → `app.ws.chat`);
    /// `""` is the explicit opt-in to every module on `package.path`. No default: without
    /// it or `routes` the server does not start, so the network cannot `require` what it likes.
    pub handler_base: Option<String>,
    /// Exact request paths → handler modules (`{["/chat"] = "app.chat"}`), loaded and
    /// checked by `ws.server` at start; tried before `handler_base`.
    pub routes: HashMap<String, String>,
    /// Each connection's settings (limits, timeouts, send buffer): see [`Settings`].
    /// Keepalive is on by default here (`SERVER_PING_INTERVAL`). One allocation shared
    /// by every connection's engine.
    pub session: Arc<Settings>,
    /// Upgrade request head: most bytes (431 beyond). Default 8 KiB. Stops huge heads.
    pub max_header_bytes: usize,
    /// Upgrade request head: most header lines (431 beyond). Default 64.
    pub max_headers: usize,
    /// Time a client has to send its whole Upgrade request. Default 10 s. Stops slowloris.
    pub handshake_timeout: Duration,
    /// Time `stop` waits for all closing handshakes before dropping connections. Default 5 s.
    pub shutdown_timeout: Cell<Duration>,
    /// Most connections open at once (handshaking and static files included); beyond,
    /// 503. Default 10,000, lowered to the descriptor limit. Stops descriptor exhaustion.
    pub max_connections: u64,
    /// Origins allowed to connect (browsers' `Origin` header); others get 403. Default: any.
    pub origins: Option<Vec<String>>,
    /// Directory whose files answer plain GET and HEAD requests (`/` is `index.html`),
    /// resolved at start. Default none: such requests get 426.
    pub static_dir: Option<static_files::StaticDir>,
    /// permessage-deflate (`compression = false | true | {...}`), offered to every client
    /// that asks unless a handler class says otherwise. Default on, with a 4 KiB window and
    /// memLevel 5 (see `deflate::Config`); `None`: off.
    pub compression: Option<deflate::Config>,
    /// Most topics one connection may subscribe to (`conn:subscribe`). Default 64. Stops
    /// one client making the server hold unbounded subscriptions.
    pub max_topics: usize,
    /// A subscriber whose queue is over `send_buffer` when a message is published:
    /// `"drop"` (it misses the message, counted in `stats().publish_dropped`; default) or
    /// `"close"` (1008). Stops one slow reader holding up, or bloating, a whole topic.
    pub slow_subscriber: SlowSubscriber,
    /// Worker processes serving the port (`workers = N` or `"auto"`: one per core). Default 1.
    pub workers: usize,
    /// A module each worker `require`s once at start (`worker_init = "app.init"`).
    pub worker_init: Option<String>,
    /// Topics across server processes through Redis: `pubsub = {redis = "redis://host:port/db"
    /// (or redis_cluster = {URL, ...}), channel_prefix = "ws:", max_queued_bytes = 8 MiB}` (see
    /// `pubsub`). Default none: topics are this server's only.
    pub pubsub: Option<PubsubOptions>,
    /// TLS (wss): `tls = {cert = "cert.pem", key = "key.pem" [, chain = "chain.pem"]}`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub logger: Rc<Logger>,
}

/// Builds the TLS acceptor from PEM files: certificate (+ chain) and a private key
/// (PKCS#8, PKCS#1 RSA or SEC1 EC). rustls with ring, TLS 1.2 and 1.3 (driven by `tls`).
fn tls_acceptor(t: &Table) -> mlua::Result<Arc<rustls::ServerConfig>> {
    let read = |key: &str, required: bool| -> mlua::Result<Vec<u8>> {
        match t.get::<Option<String>>(key)? {
            Some(path) => std::fs::read(&path).map_err(|e| {
                mlua::Error::runtime(format!("ws.server: cannot read tls.{key} '{path}': {e}"))
            }),
            None if required => Err(mlua::Error::runtime(format!(
                "ws.server: tls.{key} (a PEM file) is required"
            ))),
            None => Ok(Vec::new()),
        }
    };
    let mut cert = read("cert", true)?;
    let key = read("key", true)?;
    cert.extend_from_slice(b"\n");
    cert.extend(read("chain", false)?);
    let not_pem = |what: &str, e: &dyn std::fmt::Display| {
        mlua::Error::runtime(format!("ws.server: tls.{what} is not a PEM {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("cert", &format_args!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(not_pem("cert", &"certificate: none found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| not_pem("key", &format_args!("private key: {e}")))?;
    // ring, the one provider built in (crate features)
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                mlua::Error::runtime("ws.server: tls.key does not match tls.cert")
            }
            e => mlua::Error::runtime(format!("ws.server: cannot set up TLS: {e}")),
        })?;
    Ok(Arc::new(config))
}

/// The `routes` table: request path → handler module name.
fn routes(r: &Reader) -> mlua::Result<HashMap<String, String>> {
    let want = "a table of path = module name strings";
    let Some(map) = r.table("routes")? else {
        return Ok(HashMap::new());
    };
    map.pairs::<Value, Value>()
        .map(|pair| match pair? {
            (Value::String(path), Value::String(module)) => {
                Ok((path.to_str()?.to_owned(), module.to_str()?.to_owned()))
            }
            (path, _) => Err(r.refuse("routes", want, &path)),
        })
        .collect()
}

/// The `pubsub` option: `{redis = URL | redis_cluster = {URL, ...} [, channel_prefix = "ws:"]
/// [, max_queued_bytes = 8 MiB]}`, its URLs checked.
fn pubsub_option(r: &Reader) -> mlua::Result<Option<PubsubOptions>> {
    let Some(t) = r.table("pubsub")? else {
        return Ok(None);
    };
    let p = Reader::new(&t, "ws.server", "pubsub.");
    let redis = match (p.text("redis")?, p.strings("redis_cluster")?) {
        (Some(url), None) => Redis::One(url),
        (None, Some(urls)) => Redis::Cluster(urls),
        (Some(_), Some(_)) => {
            return Err(mlua::Error::runtime(
                "ws.server: pubsub takes redis (one Redis) or redis_cluster (a Redis Cluster), not both",
            ))
        }
        (None, None) => {
            return Err(p.refuse(
                "redis",
                "a redis:// URL (or redis_cluster a list of them)",
                &mlua::Value::Nil,
            ))
        }
    };
    let options = PubsubOptions {
        redis,
        channel_prefix: p.text("channel_prefix")?.unwrap_or_else(|| "ws:".into()),
        max_queued_bytes: p.count(
            "max_queued_bytes",
            1,
            1 << 40,
            pubsub::MAX_QUEUED_BYTES as u64,
        )? as usize,
    };
    options.check().map_err(mlua::Error::runtime)?;
    Ok(Some(options))
}

impl Options {
    pub fn from_lua(t: &Table) -> mlua::Result<Self> {
        let r = Reader::new(t, "ws.server", "");
        let handler_base = r.text("handler_base")?;
        if let Some(base) = &handler_base {
            routing::check_base(base)
                .map_err(|e| mlua::Error::runtime(format!("ws.server: {e}")))?;
        }
        let routes = routes(&r)?;
        if handler_base.is_none() && routes.is_empty() {
            return Err(mlua::Error::runtime(
                "ws.server: say which handler modules clients may reach: handler_base = \"app.ws\" \
                 (/chat -> app.ws.chat), routes = {[\"/chat\"] = \"app.chat\"}, or handler_base = \"\" \
                 for any module on package.path",
            ));
        }
        let session = options::settings(
            &r,
            Settings {
                ping_interval: Some(SERVER_PING_INTERVAL),
                ..Settings::default()
            },
            true,
        )?;
        let tls = match r.value("tls")? {
            Value::Nil => None,
            Value::Table(tls) => Some(tls_acceptor(&tls)?),
            other => return Err(r.refuse("tls", "a table {cert =, key = [, chain =]}", &other)),
        };
        Ok(Options {
            host: r.text("host")?.unwrap_or_else(|| "127.0.0.1".into()),
            port: r.count("port", 0, 65535, 0)? as u16,
            handler_base,
            routes,
            session: Arc::new(session),
            max_header_bytes: r.count("max_header_bytes", 256, 1 << 20, DEFAULT_MAX_HEADER_BYTES)?
                as usize,
            max_headers: r.count("max_headers", 1, 1024, DEFAULT_MAX_HEADERS)? as usize,
            handshake_timeout: r
                .seconds("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT.as_secs_f64())?,
            shutdown_timeout: Cell::new(
                r.seconds("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT.as_secs_f64())?,
            ),
            max_connections: r.count("max_connections", 1, 1 << 32, DEFAULT_MAX_CONNECTIONS)?,
            origins: r.strings("origins")?,
            static_dir: r
                .text("static")?
                .map(|dir| static_files::StaticDir::open(&dir))
                .transpose()
                .map_err(|e| mlua::Error::runtime(format!("ws.server: static: {e}")))?,
            compression: options::compression_or(
                r.value("compression")?,
                "ws.server",
                "compression",
                deflate::Config::default(),
            )?,
            pubsub: pubsub_option(&r)?,
            workers: match r.value("workers")? {
                Value::String(s) if s.to_str()? == "auto" => {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                }
                _ => r.count("workers", 1, 256, 1)? as usize,
            },
            worker_init: r.text("worker_init")?,
            max_topics: r.count("max_topics", 0, 1 << 20, DEFAULT_MAX_TOPICS as u64)? as usize,
            slow_subscriber: match r.text("slow_subscriber")?.as_deref() {
                None | Some("drop") => SlowSubscriber::Drop,
                Some("close") => SlowSubscriber::Close,
                Some(_) => {
                    return Err(r.refuse(
                        "slow_subscriber",
                        "\"drop\" or \"close\"",
                        &r.value("slow_subscriber")?,
                    ))
                }
            },
            tls,
            logger: Rc::new(Logger::from_options(
                "ws.server",
                r.value("log")?,
                r.text("log_level")?,
            )?),
        })
    }
}
