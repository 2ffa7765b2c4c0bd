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

    /// Every counter as a flat `name = value` list (`rejected_by_reason.400`,
    /// `protocol_error_closes.1002`): what a worker sends its siblings, and what
    /// [`to_lua`] builds the table from.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("open_connections".to_owned(), self.open.get()),
            (
                "handshakes_accepted".to_owned(),
                self.handshakes_accepted.get(),
            ),
            ("messages_in".to_owned(), self.messages_in.get()),
            ("messages_out".to_owned(), self.messages_out.get()),
            ("bytes_in".to_owned(), self.bytes_in.get()),
            ("bytes_out".to_owned(), self.bytes_out.get()),
            ("max_queued_bytes".to_owned(), self.max_queued_bytes.get()),
            (
                "max_inflated_bytes".to_owned(),
                self.max_inflated_bytes.get(),
            ),
        ];
        for (reason, n) in self.rejected.borrow().iter() {
            out.push((format!("rejected_by_reason.{reason}"), *n));
        }
        for (code, n) in self.protocol_closes.borrow().iter() {
            out.push((format!("protocol_error_closes.{code}"), *n));
        }
        out
    }
}

/// Adds `more` into `total`: counters add up, `max_*` take the largest.
pub fn merge(total: &mut Vec<(String, u64)>, more: &[(String, u64)]) {
    for (k, v) in more {
        match total.iter_mut().find(|(name, _)| name == k) {
            Some((_, t)) if k.starts_with("max_") => *t = (*t).max(*v),
            Some((_, t)) => *t += v,
            None => total.push((k.clone(), *v)),
        }
    }
}

/// The table `server:stats()` returns, from a snapshot: `a.b` names become nested
/// tables (`rejected_by_reason`, `protocol_error_closes`, numbers as keys where they are
/// numbers), and `handshakes_rejected` is the sum of `rejected_by_reason`.
pub fn to_lua(lua: &Lua, snapshot: &[(String, u64)]) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("rejected_by_reason", lua.create_table()?)?;
    t.set("protocol_error_closes", lua.create_table()?)?;
    let mut rejected = 0;
    for (name, v) in snapshot {
        match name.split_once('.') {
            Some((group, key)) => {
                let sub: Table = t.get(group)?;
                match key.parse::<i64>() {
                    Ok(n) if group == "protocol_error_closes" => sub.set(n, *v)?,
                    _ => sub.set(key, *v)?,
                }
                if group == "rejected_by_reason" {
                    rejected += v;
                }
            }
            None => t.set(name.as_str(), *v)?,
        }
    }
    t.set("handshakes_rejected", rejected)?;
    Ok(t)
}
