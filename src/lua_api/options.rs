//! options: reading what Lua passes in — the option tables of `ws.server{...}` and
//! `ws.connect{...}`, and the seconds of `recv`, `ws.sleep` and `server:stop` — with one
//! error shape: `<where>: <key> must be <what>, got <value>` (numbers and strings shown
//! by value, anything else by type), so a user can act on it.

use mlua::{Table, Value};
use std::time::Duration;
use ws_proto::codec::Limits;
use ws_proto::deflate;
use ws_proto::engine::Settings;

/// What a refused value was, for the error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.to_string_lossy()),
        other => other.type_name().to_owned(),
    }
}

/// `<where>: <name> must be <want>, got <value>`.
pub fn refused(place: &str, name: &str, want: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{place}: {name} must be {want}, got {}",
        describe(got)
    ))
}

/// A number of seconds >= 0 given to `place` (`recv`, `ws.sleep`, ...).
pub fn seconds_value(place: &str, name: &str, s: f64) -> mlua::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| refused(place, name, "a number of seconds >= 0", &Value::Number(s)))
}

/// An option table being read: `ws.server`'s (`place` "ws.server", keys bare) or
/// `ws.connect`'s (`place` "connect", keys shown as `inputs.<key>`).
pub struct Reader<'a> {
    table: &'a Table,
    place: &'static str,
    prefix: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(table: &'a Table, place: &'static str, prefix: &'a str) -> Self {
        Reader {
            table,
            place,
            prefix,
        }
    }

    /// The error for `key`'s value `got`.
    pub fn refuse(&self, key: &str, want: &str, got: &Value) -> mlua::Error {
        refused(self.place, &format!("{}{key}", self.prefix), want, got)
    }

    /// The raw value of `key`.
    pub fn value(&self, key: &str) -> mlua::Result<Value> {
        self.table.get(key)
    }

    fn number(&self, key: &str) -> mlua::Result<Option<(f64, Value)>> {
        let v = self.value(key)?;
        Ok(match &v {
            Value::Nil => None,
            Value::Integer(i) => Some((*i as f64, v)),
            Value::Number(n) => Some((*n, v)),
            _ => Some((f64::NAN, v)),
        })
    }

    /// A whole number in `min..=max`.
    pub fn count(&self, key: &str, min: u64, max: u64, default: u64) -> mlua::Result<u64> {
        match self.number(key)? {
            None => Ok(default),
            Some((n, _)) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(n as u64),
            Some((_, v)) => {
                Err(self.refuse(key, &format!("a whole number from {min} to {max}"), &v))
            }
        }
    }

    /// A number of seconds >= 0.
    pub fn seconds(&self, key: &str, default: f64) -> mlua::Result<Duration> {
        let (s, v) = self.number(key)?.unwrap_or((default, Value::Nil));
        Duration::try_from_secs_f64(s).map_err(|_| self.refuse(key, "a number of seconds >= 0", &v))
    }

    /// A number of seconds where 0 means "off": `None`.
    pub fn seconds_or_off(&self, key: &str, default: f64) -> mlua::Result<Option<Duration>> {
        Ok(Some(self.seconds(key, default)?).filter(|d| !d.is_zero()))
    }

    /// A string.
    pub fn text(&self, key: &str) -> mlua::Result<Option<String>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_str()?.to_owned())),
            other => Err(self.refuse(key, "a string", &other)),
        }
    }

    /// `value` of `key`, which must be there: `want` names what it should be.
    pub fn required<T>(&self, key: &str, want: &str, value: Option<T>) -> mlua::Result<T> {
        value.ok_or_else(|| self.refuse(key, &format!("{want} (it is required)"), &Value::Nil))
    }

    /// A boolean.
    pub fn boolean(&self, key: &str) -> mlua::Result<Option<bool>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::Boolean(b) => Ok(Some(b)),
            other => Err(self.refuse(key, "a boolean", &other)),
        }
    }

    /// A table.
    pub fn table(&self, key: &str) -> mlua::Result<Option<Table>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::Table(t) => Ok(Some(t)),
            other => Err(self.refuse(key, "a table", &other)),
        }
    }

    /// A list of strings.
    pub fn strings(&self, key: &str) -> mlua::Result<Option<Vec<String>>> {
        let list = match self.value(key)? {
            Value::Nil => return Ok(None),
            Value::Table(t) => t,
            other => return Err(self.refuse(key, "a list of strings", &other)),
        };
        list.sequence_values::<Value>()
            .map(|v| match v? {
                Value::String(s) => Ok(s.to_str()?.to_owned()),
                other => Err(self.refuse(key, "a list of strings", &other)),
            })
            .collect::<mlua::Result<Vec<_>>>()
            .map(Some)
    }
}

/// The session settings of an option table, `defaults` for what it leaves out:
/// `max_message_size`, `max_frame_size` (the server's only; the client's frames are
/// limited like its messages), `close_timeout`, `ping_interval` and `idle_timeout` (0 is
/// off), `pong_timeout`, `send_buffer`, `send_timeout`.
pub fn settings(r: &Reader, defaults: Settings, frames_apart: bool) -> mlua::Result<Settings> {
    let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    let max_message_size = r.count(
        "max_message_size",
        1,
        1 << 40,
        defaults.limits.max_message_size as u64,
    )? as usize;
    let max_frame_size = if frames_apart {
        r.count("max_frame_size", 1, 1 << 40, max_message_size as u64)? as usize
    } else {
        max_message_size
    };
    Ok(Settings {
        limits: Limits {
            max_message_size,
            max_frame_size,
        },
        close_timeout: r.seconds("close_timeout", defaults.close_timeout.as_secs_f64())?,
        ping_interval: r.seconds_or_off("ping_interval", secs(defaults.ping_interval))?,
        pong_timeout: r.seconds("pong_timeout", defaults.pong_timeout.as_secs_f64())?,
        idle_timeout: r.seconds_or_off("idle_timeout", secs(defaults.idle_timeout))?,
        send_buffer: r.count("send_buffer", 1, 1 << 40, defaults.send_buffer as u64)? as usize,
        send_timeout: r.seconds_or_off("send_timeout", secs(defaults.send_timeout))?,
    })
}

/// The `compression` option (permessage-deflate) `v`, called `name` in `place`'s
/// messages: `false` (off), `true` (the defaults), a table of changes to the defaults
/// (`server_max_window_bits`, `client_max_window_bits` 8..15,
/// `server_no_context_takeover`, `client_no_context_takeover`, `mem_level` 1..9,
/// `level` 0..9, `threshold` bytes, `release_when_idle`, which needs both
/// `*_no_context_takeover`), or a configuration already read (what a server hands
/// `ws.accept`). `None` when not given; `Some(None)` when off. `d`: the defaults (a
/// server's or a client's).
pub fn compression(
    v: Value,
    place: &'static str,
    name: &str,
    d: deflate::Config,
) -> mlua::Result<Option<Option<deflate::Config>>> {
    let t = match v {
        Value::Nil => return Ok(None),
        Value::Boolean(on) => return Ok(Some(on.then_some(d))),
        Value::UserData(ud) if ud.is::<deflate::Config>() => {
            return Ok(Some(Some(*ud.borrow::<deflate::Config>()?)))
        }
        Value::Table(t) => t,
        other => return Err(refused(place, name, "false, true or a table", &other)),
    };
    let prefix = format!("{name}.");
    let c = Reader::new(&t, place, &prefix);
    let bits = |k: &str, default: u8| c.count(k, 8, 15, default.into()).map(|n| n as u8);
    let release_when_idle = c.boolean("release_when_idle")?.unwrap_or(d.release_when_idle);
    // Freeing the zlib state between messages needs both ends to start afresh each one.
    let no_takeover = |k: &str, default: bool| -> mlua::Result<bool> {
        match c.boolean(k)? {
            Some(false) if release_when_idle => Err(mlua::Error::runtime(format!(
                "{place}: {prefix}release_when_idle needs {prefix}{k} (leave it out or true)"
            ))),
            given => Ok(given.unwrap_or(default) || release_when_idle),
        }
    };
    Ok(Some(Some(deflate::Config {
        server_max_window_bits: bits("server_max_window_bits", d.server_max_window_bits)?,
        client_max_window_bits: bits("client_max_window_bits", d.client_max_window_bits)?,
        server_no_context_takeover: no_takeover("server_no_context_takeover", d.server_no_context_takeover)?,
        client_no_context_takeover: no_takeover("client_no_context_takeover", d.client_no_context_takeover)?,
        mem_level: c.count("mem_level", 1, 9, d.mem_level.into())? as u8,
        level: c.count("level", 0, 9, d.level.into())? as u8,
        threshold: c.count("threshold", 0, 1 << 40, d.threshold as u64)? as usize,
        release_when_idle,
    })))
}

/// [`compression`], `d` when not given: what a connection will use (`None`: off).
pub fn compression_or(
    v: Value,
    place: &'static str,
    name: &str,
    d: deflate::Config,
) -> mlua::Result<Option<deflate::Config>> {
    Ok(compression(v, place, name, d)?.unwrap_or(Some(d)))
}

/// `ws.connect`'s `compression` input (`inputs.compression`): on with a client's defaults
/// unless given.
pub fn client_compression(v: Value) -> mlua::Result<Option<deflate::Config>> {
    compression_or(
        v,
        "connect",
        "inputs.compression",
        deflate::Config::client_default(),
    )
}
