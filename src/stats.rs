//! stats: what a server counts (`server:stats()`).

use mlua::{Lua, Table};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

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
    /// The most bytes any one compressed message inflated to before it was delivered or
    /// refused (1009 past `max_message_size`): what a compression bomb can make the
    /// server hold.
    pub max_inflated_bytes: Cell<u64>,
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

    /// Notes a connection's largest inflated message for `max_inflated_bytes`.
    pub fn inflated(&self, bytes: usize) {
        if bytes as u64 > self.max_inflated_bytes.get() {
            self.max_inflated_bytes.set(bytes as u64);
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
        t.set("max_inflated_bytes", self.max_inflated_bytes.get())?;
        Ok(t)
    }
}
