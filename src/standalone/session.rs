//! session: the tokio driver of one open WebSocket's engine, the same for both ends.
//!
//! Reads bytes into the read buffer, lets the engine turn them into events, and delivers
//! those either to a Lua handler class (server connections, and clients opened with a
//! `msg_handler`) or to the connection's inbox, where `conn:recv()` takes them; keeps one
//! timer armed at the engine's next deadline. When the engine reports the end: handler
//! `handle_close`, flush, FIN, and a bounded wait for the peer. The protocol decisions
//! (pongs, close answers, timeouts, endings) are the engine's.
//!
//! What a connection keeps of Lua between its events is in the Lua registry
//! ([`RegistryKey`]), never an mlua reference: on Lua 5.1 and LuaJIT mlua holds its
//! references on an auxiliary stack of 8,000 slots, so a few references per idle
//! connection would cap a server at a few thousand connections (and panic past them).
//! Handler classes are looked up once per class and shared ([`handler_of`]).

use crate::lua_api::log::{Level, Logger};
use crate::standalone::connection::Connection;
use crate::standalone::frame_loop::{self, Deliver, Frames};
use crate::standalone::lua_connection::{handler_caller, message_runner, message_table};
use crate::standalone::runtime;
use crate::standalone::stats::{bump, Stats};
use bytes::BytesMut;
use futures_core::Stream;
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, RegistryKey, Table, Thread};
use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use tokio::io::AsyncRead;
use tokio::sync::watch;

use ws_proto::codec::opcode;
use ws_proto::engine::{Ending, Event, LocalClose};

/// The handler class of one connection, its functions looked up once.
pub struct Handler {
    /// Shared with each connection's `ConnectionInfo` (no copy per connection).
    pub name: Rc<str>,
    on_open: Option<Function>,
    on_message: Function,
    on_ping: Option<Function>,
    on_pong: Option<Function>,
    on_close: Option<Function>,
    on_timeout: Option<Function>,
}

impl Handler {
    fn from_table(name: Rc<str>, t: &Table) -> mlua::Result<Self> {
        Ok(Handler {
            on_open: t.get("handle_open")?,
            on_message: t.get("handle_message").map_err(|_| {
                mlua::Error::runtime(format!("handler '{name}' has no handle_message function"))
            })?,
            on_ping: t.get("handle_ping")?,
            on_pong: t.get("handle_pong")?,
            on_close: t.get("handle_close")?,
            on_timeout: t.get("handle_timeout")?,
            name,
        })
    }
}

/// What this Lua state's connections share: each handler class's functions, looked up
/// once per class (the class table kept to tell a reloaded module), and `call`.
struct Shared {
    handlers: HashMap<String, (Table, Rc<Handler>)>,
    caller: Rc<Function>,
}

fn shared(lua: &Lua) -> mlua::Result<mlua::AppDataRefMut<'_, Shared>> {
    if lua.app_data_ref::<Shared>().is_none() {
        let caller = Rc::new(handler_caller(lua)?);
        lua.set_app_data(Shared {
            handlers: HashMap::new(),
            caller,
        });
    }
    lua.app_data_mut::<Shared>()
        .ok_or_else(|| mlua::Error::runtime("session: shared handler data is borrowed"))
}

/// The handler of class `name` (the module table `class`), shared by every connection
/// of the class.
pub fn handler_of(lua: &Lua, name: &str, class: &Table) -> mlua::Result<Rc<Handler>> {
    let mut shared = shared(lua)?;
    if let Some((t, h)) = shared.handlers.get(name) {
        if t == class {
            return Ok(Rc::clone(h));
        }
    }
    let h = Rc::new(Handler::from_table(name.into(), class)?);
    shared
        .handlers
        .insert(name.to_owned(), (class.clone(), Rc::clone(&h)));
    Ok(h)
}

/// Where the messages of a connection go.
pub enum Delivery {
    Handler(Rc<Handler>),
    /// The connection's inbox, for `recv`.
    Inbox,
}

/// What the loop reports to, besides the handler.
pub struct LoopConfig {
    pub logger: Rc<Logger>,
    /// The server's counters (`None` for clients).
    pub stats: Option<Rc<Stats>>,
}

/// One open connection as the frame loop sees it.
struct Session<'a> {
    lua: &'a Lua,
    cfg: &'a LoopConfig,
    conn: &'a Rc<Connection>,
    /// The connection's Lua object (`msg.conn`), in the registry.
    conn_ud: RegistryKey,
    delivery: &'a Delivery,
    /// `call(f, op, data, conn, compressed)`: builds the `msg` table in Lua and calls `f`.
    caller: Rc<Function>,
    /// The coroutine that runs `handle_message` calls one after another (made at the
    /// first message, again after a handler error ended it): mlua in module mode makes a
    /// new coroutine for every `call_async`, and its creation and garbage cost more than
    /// the handler's own work.
    runner: RefCell<Option<Runner>>,
    /// Bytes received and not yet decoded, shared with the frame loop. The runner decodes
    /// the messages that follow the one it was resumed for itself (`next_msg()`), so that
    /// one resume handles every message a read brought; what is not a message waits in
    /// the stash for the loop.
    frames: Frames,
}

/// Counts a message received in the server's stats (clients have none).
fn count_in(stats: Option<&Stats>, len: usize) {
    if let Some(stats) = stats {
        bump(&stats.messages_in, 1);
        bump(&stats.bytes_in, len as u64);
    }
}

/// Whether a connection keeps its message coroutine's stream between messages. The
/// stream holds an mlua reference; on Lua 5.1 and LuaJIT mlua has 8,000 of them in all,
/// so there the stream is made again from the registry for each message (a few percent
/// of CPU per message), elsewhere it is kept.
const KEEP_STREAMS: bool = cfg!(not(any(feature = "lua51", feature = "luajit")));

/// A connection's message coroutine: in the registry, and as a resumable stream while it
/// runs (and between messages where [`KEEP_STREAMS`]).
struct Runner {
    /// The message it takes next (its `next_msg()`).
    next: Rc<RefCell<Option<(u8, mlua::String, bool)>>>,
    thread: RegistryKey,
    stream: Option<Pin<Box<dyn Stream<Item = mlua::Result<()>>>>>,
}

impl Session<'_> {
    fn conn_ud(&self) -> mlua::Result<AnyUserData> {
        self.lua.registry_value(&self.conn_ud)
    }

    /// A new message coroutine, started with run(f, conn, next_msg) on its first resume.
    fn new_runner(&self, h: &Handler) -> mlua::Result<Runner> {
        let next = Rc::new(RefCell::new(None));
        let (taken, conn, frames) = (Rc::clone(&next), Rc::clone(self.conn), self.frames.clone());
        let stats = self.cfg.stats.clone();
        let next_msg = self.lua.create_function(move |lua, ()| {
            if let Some((op, data, compressed)) = taken.borrow_mut().take() {
                return Ok((Some(op), Some(data), compressed));
            }
            if frames.stash.borrow().is_some() {
                return Ok((None, None, false));
            }
            let event = conn
                .engine()
                .poll_event(&mut frames.input.borrow_mut(), runtime::now);
            match event {
                Some(Event::Message {
                    op,
                    data,
                    compressed,
                }) => {
                    count_in(stats.as_deref(), data.len());
                    Ok((Some(op), Some(lua.create_string(&data)?), compressed))
                }
                other => {
                    *frames.stash.borrow_mut() = other;
                    Ok((None, None, false))
                }
            }
        })?;
        let thread = self.lua.create_thread(message_runner(self.lua)?)?;
        let key = self.lua.create_registry_value(&thread)?;
        let args = (h.on_message.clone(), self.conn_ud()?, next_msg);
        Ok(Runner {
            next,
            thread: key,
            stream: Some(Box::pin(thread.into_async::<()>(args))),
        })
    }

    /// Runs one handler function in its own coroutine. A Lua error is logged with the
    /// handler's name and closes this connection with 1011; nothing else is affected.
    async fn call(&self, name: &str, f: &Function, what: &str, arg: impl IntoLuaMulti) {
        if let Err(e) = f.call_async::<()>(arg).await {
            self.failed(name, what, e);
        }
    }

    /// Calls `handle_message` with a `msg` table in the connection's message coroutine.
    async fn call_message(
        &self,
        h: &Handler,
        op: u8,
        data: &[u8],
        compressed: bool,
    ) -> mlua::Result<()> {
        let mut runner = match self.runner.borrow_mut().take() {
            Some(runner) => runner,
            None => self.new_runner(h)?,
        };
        *runner.next.borrow_mut() = Some((op, self.lua.create_string(data)?, compressed));
        // A waiting coroutine is resumed from its yield (on Lua 5.1 / LuaJIT through a
        // stream made again from the registry).
        let mut stream = match runner.stream.take() {
            Some(stream) => stream,
            None => Box::pin(
                self.lua
                    .registry_value::<Thread>(&runner.thread)?
                    .into_async::<()>(()),
            ),
        };
        match std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            Some(Ok(())) => {
                if KEEP_STREAMS {
                    runner.stream = Some(stream);
                }
                *self.runner.borrow_mut() = Some(runner);
            }
            Some(Err(e)) => self.failed(&h.name, "handle_message", e),
            None => {}
        }
        Ok(())
    }

    /// Logs a handler's error with its name and closes the connection with 1011.
    fn failed(&self, name: &str, what: &str, e: mlua::Error) {
        let c = &self.conn.info;
        self.cfg.logger.log(
            Level::Error,
            format_args!(
                "handler '{name}' failed in {what} on connection #{} ({}): {e}",
                c.id, c.peer
            ),
        );
        self.conn.fail(LocalClose::HandlerError);
    }

    /// Calls `hook` of the handler class, if it has one, with a `msg` table.
    async fn call_hook(
        &self,
        hook: &str,
        op: u8,
        data: &[u8],
        extra: &[(&str, mlua::Value)],
    ) -> mlua::Result<()> {
        let Delivery::Handler(h) = self.delivery else {
            return Ok(());
        };
        let f = match hook {
            "handle_message" => Some(&h.on_message),
            "handle_ping" => h.on_ping.as_ref(),
            "handle_pong" => h.on_pong.as_ref(),
            "handle_close" => h.on_close.as_ref(),
            _ => h.on_timeout.as_ref(),
        };
        let Some(f) = f else {
            return Ok(());
        };
        if extra.is_empty() {
            let data = self.lua.create_string(data)?;
            let args = (f.clone(), op, data, self.conn_ud()?);
            self.call(&h.name, &self.caller, hook, args).await;
        } else {
            let msg = message_table(self.lua, &self.conn_ud()?, op, data, false)?;
            for (k, v) in extra {
                msg.raw_set(*k, v.clone())?;
            }
            self.call(&h.name, f, hook, msg).await;
        }
        Ok(())
    }

    /// Delivers one event other than the ending.
    async fn dispatch(&self, event: Event) -> mlua::Result<()> {
        match event {
            Event::Message {
                op,
                data,
                compressed,
            } => {
                count_in(self.cfg.stats.as_deref(), data.len());
                match (self.delivery, self.conn.inbox()) {
                    (Delivery::Inbox, Some(inbox)) => inbox.push(op, data, compressed).await,
                    (Delivery::Handler(h), _) => {
                        self.call_message(h, op, &data, compressed).await?
                    }
                    _ => {}
                }
            }
            Event::Ping(data) => {
                self.call_hook("handle_ping", opcode::PING, &data, &[])
                    .await?
            }
            Event::Pong(data) => {
                self.call_hook("handle_pong", opcode::PONG, &data, &[])
                    .await?
            }
            Event::TimedOut(reason) => {
                let c = &self.conn.info;
                self.cfg.logger.log(
                    Level::Info,
                    format_args!("connection #{} ({}): {reason}", c.id, c.peer),
                );
                let reason_value = mlua::Value::String(self.lua.create_string(reason)?);
                self.call_hook(
                    "handle_timeout",
                    opcode::CLOSE,
                    reason.as_bytes(),
                    &[("reason", reason_value)],
                )
                .await?;
            }
            Event::Closed(_) => unreachable!("the ending is handled by the loop"),
        }
        Ok(())
    }

    /// Reports the ending: logs and counts a protocol violation, ends `recv`, and calls
    /// `handle_close` with the peer's code and reason.
    async fn ended(&self, ending: &Ending) -> mlua::Result<()> {
        if let Some(e) = &ending.error {
            let c = &self.conn.info;
            self.cfg.logger.log(
                Level::Warn,
                format_args!("connection #{} ({}): protocol error: {e}", c.id, c.peer),
            );
            if let Some(stats) = &self.cfg.stats {
                stats.protocol_close(e.close_code);
            }
        }
        if let Some(stats) = &self.cfg.stats {
            stats.inflated(self.conn.engine().max_inflated());
        }
        if let Some(inbox) = self.conn.inbox() {
            inbox.close(ending.code, &ending.reason);
        }
        let code = mlua::Value::Integer(ending.code as i64);
        let reason = mlua::Value::String(self.lua.create_string(&ending.reason)?);
        self.call_hook(
            "handle_close",
            opcode::CLOSE,
            ending.reason.as_bytes(),
            &[("code", code), ("reason", reason)],
        )
        .await
    }
}

impl Deliver for Session<'_> {
    async fn opened(&self) {
        if let Delivery::Handler(h) = self.delivery {
            if let Some(f) = &h.on_open {
                match self.conn_ud() {
                    Ok(ud) => self.call(&h.name, f, "handle_open", ud).await,
                    Err(e) => self.failed(&h.name, "handle_open", e),
                }
            }
        }
    }

    async fn event(&self, event: Event) -> mlua::Result<()> {
        self.dispatch(event).await
    }

    async fn ended(&self, ending: &Ending) -> mlua::Result<()> {
        Session::ended(self, ending).await
    }
}

/// The frame loop of an open connection delivering to Lua, then its closing. `conn_ud` is
/// the Lua object of `conn` that handlers see as `msg.conn`; `stop` (the server's stop
/// signal) starts the closing handshake with 1001. `rbuf` holds bytes read past the
/// handshake.
#[allow(clippy::too_many_arguments)]
pub async fn run<R: AsyncRead + Unpin>(
    lua: &Lua,
    cfg: &LoopConfig,
    reader: R,
    rbuf: BytesMut,
    conn: Rc<Connection>,
    conn_ud: AnyUserData,
    delivery: Delivery,
    stop: Option<watch::Receiver<bool>>,
) -> mlua::Result<()> {
    let frames = Frames::new(rbuf);
    let session = Session {
        lua,
        cfg,
        conn: &conn,
        conn_ud: lua.create_registry_value(conn_ud)?,
        delivery: &delivery,
        caller: Rc::clone(&shared(lua)?.caller),
        runner: RefCell::new(None),
        frames: frames.clone(),
    };
    Box::pin(frame_loop::drive(&conn, reader, &frames, &session, stop)).await
}
