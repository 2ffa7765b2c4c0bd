//! connect_inputs: the one reading of `ws.connect(inputs)` for both runtimes. Every input
//! is named in [`INPUTS`] with what each runtime does with it: the standalone runtime
//! honours them all; under evluaserver an input it cannot honour is refused with a message
//! naming it and why — never ignored — and an input no runtime knows is refused too.
//! Misuse (a missing or mistyped input) raises an error naming the input, with the same
//! words in both runtimes.

use crate::lua_api::options::{self, Reader};
use crate::standalone::proxy::{self, Proxy};
use mlua::{Lua, Table, Value};
use std::time::Duration;
use ws_proto::deflate;
use ws_proto::engine::Settings;
use ws_proto::handshake;
use ws_proto::url::{parse_url, Url};

/// Which runtime reads the inputs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Standalone,
    Evluaserver,
}

/// Every input of `ws.connect`, in the order the docs list them, with why evluaserver's
/// runtime refuses it (`None`: honoured there too).
pub const INPUTS: &[(&str, Option<&str>)] = &[
    ("url", None),
    ("hdrs", None),
    ("external", None),
    ("secure", None),
    ("msg_handler", None),
    ("timeout", None),
    ("credentials", None),
    ("compression", None),
    ("max_message_size", None),
    ("close_timeout", None),
    ("proxy", Some("it makes the connection itself")),
    ("reconnect", Some("nothing runs between its dispatches")),
    (
        "ca_file",
        Some("TLS is made by service_utils.REST.client, which takes no CA file"),
    ),
    (
        "verify",
        Some("TLS is made by service_utils.REST.client, which has no such switch"),
    ),
    (
        "max_frame_size",
        Some("frames are limited by max_message_size only"),
    ),
    (
        "send_buffer",
        Some("every send is written out before it returns: there is no queue to bound"),
    ),
    (
        "send_timeout",
        Some("a send waits for evluaserver, which has its own timeouts"),
    ),
    (
        "ping_interval",
        Some("nothing runs between its dispatches to send pings"),
    ),
    (
        "pong_timeout",
        Some("nothing runs between its dispatches to send pings"),
    ),
    (
        "idle_timeout",
        Some("nothing runs between its dispatches to notice idleness"),
    ),
];

/// The inputs of `ws.connect`, checked.
pub struct ConnectInputs {
    pub url: Url,
    /// The request's extra headers, `Authorization` from `credentials` included (the
    /// handshake's own headers are the runtime's).
    pub headers: Vec<(String, String)>,
    pub msg_handler: Option<String>,
    pub timeout: Duration,
    /// Extra CA certificate (PEM file) to trust, for servers with a private CA.
    pub ca_file: Option<String>,
    /// Verify the server's certificate and host name. Default true.
    pub verify: bool,
    /// The connection's settings (limits, timeouts, send buffer): see [`Settings`]; no
    /// keepalive unless `ping_interval` is given.
    pub session: Settings,
    /// permessage-deflate to offer (`compression = false | true | {...}`). Default on.
    pub compression: Option<deflate::Config>,
    /// The `proxy` input: `None` (not given): the environment's; `Some(None)`: `false`, none.
    pub proxy: Option<Option<Proxy>>,
}

/// The headers `ws.connect` writes itself; the same names in `inputs.hdrs` are dropped.
const MANAGED_HEADERS: [&str; 5] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
];

fn header_text(what: &str, v: Value) -> mlua::Result<String> {
    let s = match v {
        Value::String(s) => s.to_str()?.to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(options::refused("connect", what, "a string", &other)),
    };
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(mlua::Error::runtime(format!(
            "connect: {what} must not contain CR, LF or NUL"
        )));
    }
    Ok(s)
}

/// Refuses what `runtime` cannot honour and what no runtime knows.
fn refuse_unknown(t: &Table, runtime: Runtime) -> mlua::Result<()> {
    for (name, why) in INPUTS {
        if let (Runtime::Evluaserver, Some(why)) = (runtime, why) {
            if !t.raw_get::<Value>(*name)?.is_nil() {
                return Err(mlua::Error::runtime(format!(
                    "connect: inputs.{name} is not supported under evluaserver ({why})"
                )));
            }
        }
    }
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let known = match &k {
            Value::String(s) => INPUTS.iter().any(|(n, _)| s.as_bytes() == n.as_bytes()),
            _ => false,
        };
        if !known {
            let name = match &k {
                Value::String(s) => s.to_string_lossy(),
                other => format!("[{}]", other.type_name()),
            };
            return Err(mlua::Error::runtime(format!(
                "connect: inputs.{name} is not an input of ws.connect"
            )));
        }
    }
    Ok(())
}

fn headers_of(r: &Reader, hdrs: &Table) -> mlua::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for pair in hdrs.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let name = header_text("a header name in inputs.hdrs", k)?;
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':') {
            return Err(mlua::Error::runtime(format!(
                "connect: '{name}' in inputs.hdrs is not a header name"
            )));
        }
        if !MANAGED_HEADERS
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&name))
        {
            headers.push((
                name.clone(),
                header_text(&format!("inputs.hdrs['{name}']"), v)?,
            ));
        }
    }
    if let Some(c) = r.table("credentials")? {
        let user: Option<String> = c.get("username")?;
        let pass: Option<String> = c.get("password")?;
        if let (Some(u), Some(p)) = (user, pass) {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Authorization"))
            {
                headers.push((
                    "Authorization".into(),
                    handshake::basic_authorization(&u, &p),
                ));
            }
        }
    }
    Ok(headers)
}

fn proxy_of(r: &Reader) -> mlua::Result<Option<Option<Proxy>>> {
    Ok(match r.value("proxy")? {
        Value::Nil => None,
        Value::Boolean(false) => Some(None),
        Value::String(u) => {
            Some(Some(proxy::parse(&u.to_str()?).map_err(|e| {
                mlua::Error::runtime(format!("connect: inputs.{e}"))
            })?))
        }
        other => {
            return Err(r.refuse(
                "proxy",
                "a proxy URL (http://, socks5://, socks5h://) or false",
                &other,
            ))
        }
    })
}

impl ConnectInputs {
    pub fn from_lua(t: &Table, runtime: Runtime) -> mlua::Result<ConnectInputs> {
        refuse_unknown(t, runtime)?;
        let r = Reader::new(t, "connect", "inputs.");
        let url = r.required("url", "a string", r.text("url")?)?;
        let url = parse_url(&url).map_err(mlua::Error::runtime)?;
        let hdrs = r.required("hdrs", "a table", r.table("hdrs")?)?;
        r.required("external", "a boolean", r.boolean("external")?)?;
        let secure = r.boolean("secure")? == Some(true);
        if !matches!(
            r.value("reconnect")?,
            Value::Nil | Value::Boolean(_) | Value::Table(_)
        ) {
            return Err(r.refuse("reconnect", "a boolean or a table", &r.value("reconnect")?));
        }
        Ok(ConnectInputs {
            url: Url {
                secure: url.secure || secure,
                ..url
            },
            headers: headers_of(&r, &hdrs)?,
            msg_handler: r.text("msg_handler")?,
            timeout: r.seconds("timeout", 40.0)?,
            ca_file: r.text("ca_file")?,
            verify: r.boolean("verify")? != Some(false),
            session: options::settings(&r, Settings::default(), true)?,
            compression: options::client_compression(r.value("compression")?)?,
            proxy: proxy_of(&r)?,
        })
    }

    /// What the evluaserver glue needs, as a Lua table: `{secure=, host=, port=,
    /// target=, hdrs = {name = value...}, msg_handler=, timeout = whole seconds,
    /// extensions = the permessage-deflate offer | nil, max_message_size=, close_timeout =
    /// seconds}`.
    pub fn for_glue(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("secure", self.url.secure)?;
        t.set("host", self.url.host.as_str())?;
        t.set("port", self.url.port)?;
        t.set("target", self.url.target.as_str())?;
        let hdrs = lua.create_table()?;
        for (name, value) in &self.headers {
            hdrs.set(name.as_str(), value.as_str())?;
        }
        t.set("hdrs", hdrs)?;
        t.set("msg_handler", self.msg_handler.as_deref())?;
        // evluaserver waits whole seconds
        let whole = |d: Duration| d.as_secs_f64().ceil().max(1.0) as u64;
        t.set("timeout", whole(self.timeout))?;
        t.set(
            "extensions",
            self.compression.as_ref().map(deflate::client_offer),
        )?;
        t.set("max_message_size", self.session.limits.max_message_size)?;
        t.set("close_timeout", self.session.close_timeout.as_secs_f64())?;
        Ok(t)
    }
}
