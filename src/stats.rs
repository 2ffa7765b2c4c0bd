//! stats: what a server counts (`server:stats()`) and how events are reported (the `log`
//! option of servers and clients).

use mlua::{Function, Lua, Table, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Display;

/// Counters of one server. Single-threaded: plain cells.
#[derive(Default)]
pub struct Stats {
    /// Connections upgraded and not yet closed.
    pub open: Cell<u64>,
    pub handshakes_accepted: Cell<u64>,
    /// Refused handshakes by reason (`"400"`, `"403"`, `"503"`, `"timeout"`, `"tls"` ...).
    rejected: RefCell<BTreeMap<String, u64>>,
    pub messages_in: Cell<u64>,
    pub messages_out: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    /// Connections we closed for a protocol violation, by close code.
    protocol_closes: RefCell<BTreeMap<u16, u64>>,
    /// The most bytes any one connection has had queued for its peer (data, pongs,
    /// close frames): what a peer that does not read can make the server hold.
    pub max_queued_bytes: Cell<u64>,
}

/// Adds `n` to a counter.
pub fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

impl Stats {
    pub fn reject(&self, reason: &str) {
        *self
            .rejected
            .borrow_mut()
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Notes a connection's queue size for `max_queued_bytes`.
    pub fn queued(&self, bytes: usize) {
        if bytes as u64 > self.max_queued_bytes.get() {
            self.max_queued_bytes.set(bytes as u64);
        }
    }

    pub fn protocol_close(&self, code: u16) {
        *self.protocol_closes.borrow_mut().entry(code).or_default() += 1;
    }

    /// The table `server:stats()` returns.
    pub fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("open_connections", self.open.get())?;
        t.set("handshakes_accepted", self.handshakes_accepted.get())?;
        let rejected = lua.create_table()?;
        let mut total = 0;
        for (reason, n) in self.rejected.borrow().iter() {
            rejected.set(reason.as_str(), *n)?;
            total += n;
        }
        t.set("handshakes_rejected", total)?;
        t.set("rejected_by_reason", rejected)?;
        t.set("messages_in", self.messages_in.get())?;
        t.set("messages_out", self.messages_out.get())?;
        t.set("bytes_in", self.bytes_in.get())?;
        t.set("bytes_out", self.bytes_out.get())?;
        let closes = lua.create_table()?;
        for (code, n) in self.protocol_closes.borrow().iter() {
            closes.set(*code, *n)?;
        }
        t.set("protocol_error_closes", closes)?;
        t.set("max_queued_bytes", self.max_queued_bytes.get())?;
        Ok(t)
    }
}

/// How serious an event is; the `log` option keeps those at or above a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        [Level::Error, Level::Warn, Level::Info, Level::Debug]
            .into_iter()
            .find(|l| l.name() == s)
    }
}

/// Where events go: stderr, or a Lua function `log(level, message)`, from a level up.
pub struct Logger {
    /// Events less serious than this are dropped; `None`: log nothing.
    level: Option<Level>,
    callback: Option<Function>,
}

impl Logger {
    /// From the `log` / `log_level` options: `log = false` silences, `log = function(level,
    /// message)` receives events instead of stderr; `log_level` is "error", "warn"
    /// (default), "info" or "debug".
    pub fn from_options(what: &str, log: Value, level: Option<String>) -> mlua::Result<Logger> {
        let level = match level.as_deref() {
            None => Level::Warn,
            Some(s) => Level::parse(s).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "{what}: log_level must be error, warn, info or debug, got '{s}'"
                ))
            })?,
        };
        match log {
            Value::Nil | Value::Boolean(true) => Ok(Logger {
                level: Some(level),
                callback: None,
            }),
            Value::Boolean(false) => Ok(Logger {
                level: None,
                callback: None,
            }),
            Value::Function(f) => Ok(Logger {
                level: Some(level),
                callback: Some(f),
            }),
            other => Err(mlua::Error::runtime(format!(
                "{what}: log must be a boolean or a function, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn stderr() -> Logger {
        Logger {
            level: Some(Level::Warn),
            callback: None,
        }
    }

    pub fn log(&self, level: Level, message: impl Display) {
        if self.level.is_none_or(|keep| level > keep) {
            return;
        }
        match &self.callback {
            Some(f) => {
                if let Err(e) = f.call::<()>((level.name(), message.to_string())) {
                    eprintln!("service_utils.WS: the log function failed: {e}");
                }
            }
            None => eprintln!("service_utils.WS: {}: {message}", level.name()),
        }
    }
}
