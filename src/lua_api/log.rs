//! log: how events are reported — the `log` and `log_level` options of servers and
//! clients: stderr, or a Lua function `log(level, message)`, from a level up.

use mlua::{Function, Value};
use std::fmt::Display;

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
