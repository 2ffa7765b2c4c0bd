//! topics: publish/subscribe inside one server. Which connections subscribe to which
//! topic, and publishing a message to all of them: the frame is encoded once and its bytes
//! shared by every recipient's queue. A recipient whose queue is over `send_buffer` is a
//! slow subscriber: it misses the message (counted) or is closed with 1008, as the
//! server's `slow_subscriber` option says. A connection leaves its topics when it ends.

use crate::codec::{self, close_code, opcode};
use crate::connection::Connection;
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::{Rc, Weak};
use std::time::Instant;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// The default of `max_topics` (subscriptions per connection).
pub const DEFAULT_MAX_TOPICS: usize = 64;

/// What happens to a subscriber whose queue is full when a message is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// It misses the message (counted in `stats().publish_dropped`).
    Drop,
    /// It is closed with 1008 "slow subscriber".
    Close,
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The name is empty or longer than [`MAX_TOPIC_BYTES`].
    BadName,
    /// The connection already has `max_topics` subscriptions.
    TooMany(usize),
}

/// One server's topics.
pub struct Topics {
    /// Subscribers of each topic, by connection id.
    by_topic: RefCell<HashMap<String, HashMap<u64, Weak<Connection>>>>,
    /// Topics of each connection, by connection id.
    by_connection: RefCell<HashMap<u64, BTreeSet<String>>>,
    pub max_topics: usize,
    pub slow: SlowSubscriber,
    /// Deliveries skipped because the subscriber's queue was full.
    pub dropped: Cell<u64>,
    /// Messages published (each counted once, whatever the number of recipients).
    pub published: Cell<u64>,
}

impl Topics {
    pub fn new(max_topics: usize, slow: SlowSubscriber) -> Self {
        Topics {
            by_topic: RefCell::default(),
            by_connection: RefCell::default(),
            max_topics,
            slow,
            dropped: Cell::new(0),
            published: Cell::new(0),
        }
    }

    /// Subscribes `conn` to `topic`; subscribing twice is one subscription.
    pub fn subscribe(&self, conn: &Rc<Connection>, topic: &str) -> Result<(), SubscribeError> {
        if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
            return Err(SubscribeError::BadName);
        }
        let id = conn.info.id;
        let mut mine = self.by_connection.borrow_mut();
        let set = mine.entry(id).or_default();
        if set.contains(topic) {
            return Ok(());
        }
        if set.len() >= self.max_topics {
            return Err(SubscribeError::TooMany(self.max_topics));
        }
        set.insert(topic.to_owned());
        self.by_topic
            .borrow_mut()
            .entry(topic.to_owned())
            .or_default()
            .insert(id, Rc::downgrade(conn));
        Ok(())
    }

    /// Unsubscribes connection `id` from `topic`; whether it was subscribed.
    pub fn unsubscribe(&self, id: u64, topic: &str) -> bool {
        let was = self
            .by_connection
            .borrow_mut()
            .get_mut(&id)
            .is_some_and(|set| set.remove(topic));
        if was {
            let mut by_topic = self.by_topic.borrow_mut();
            if let Some(subs) = by_topic.get_mut(topic) {
                subs.remove(&id);
                if subs.is_empty() {
                    by_topic.remove(topic);
                }
            }
        }
        was
    }

    /// The topics connection `id` subscribes to, in order.
    pub fn topics_of(&self, id: u64) -> Vec<String> {
        self.by_connection
            .borrow()
            .get(&id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Connection `id` has ended: it leaves every topic.
    pub fn leave_all(&self, id: u64) {
        for topic in self.topics_of(id) {
            self.unsubscribe(id, &topic);
        }
        self.by_connection.borrow_mut().remove(&id);
    }

    /// How many connections subscribe to `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.by_topic.borrow().get(topic).map_or(0, HashMap::len)
    }

    /// Sends `data` (opcode `op`, text already checked as UTF-8) to every open subscriber
    /// of `topic` but `exclude`; the number of connections it was queued for.
    pub fn publish(&self, topic: &str, op: u8, data: &[u8], exclude: Option<u64>) -> usize {
        self.published.set(self.published.get() + 1);
        let recipients: Vec<Rc<Connection>> = match self.by_topic.borrow().get(topic) {
            Some(subs) => subs
                .iter()
                .filter(|(id, _)| Some(**id) != exclude)
                .filter_map(|(_, c)| c.upgrade())
                .collect(),
            None => return 0,
        };
        let mut frame = BytesMut::with_capacity(data.len() + codec::MAX_HEADER_LEN);
        codec::encode_frame(&mut frame, true, op, data, None);
        let frame: Bytes = frame.freeze();
        let now = Instant::now();
        let mut delivered = 0;
        for conn in recipients {
            if conn.engine().is_full() {
                match self.slow {
                    SlowSubscriber::Drop => self.dropped.set(self.dropped.get() + 1),
                    SlowSubscriber::Close => conn.fail(close_code::POLICY, "slow subscriber"),
                }
                continue;
            }
            if conn.send_shared(&frame, data.len(), now).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }
}

thread_local! {
    /// The topics of every server of this Lua state (`ws.publish` reaches them all).
    static SERVERS: RefCell<Vec<Weak<Topics>>> = const { RefCell::new(Vec::new()) };
}

/// Makes a server's topics reachable by `ws.publish`.
pub fn register(topics: &Rc<Topics>) {
    SERVERS.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|t| t.strong_count() > 0);
        s.push(Rc::downgrade(topics));
    });
}

/// The topics of every live server of this Lua state.
pub fn everywhere() -> Vec<Rc<Topics>> {
    SERVERS.with(|s| s.borrow().iter().filter_map(Weak::upgrade).collect())
}

/// `publish(topic, data [, {msg_type = "TEXT"|"BINARY", exclude = conn}])` on `servers`:
/// the number of connections it was queued for. Misuse (a bad `msg_type`, text that is
/// not UTF-8, a topic name too long) raises.
pub fn publish_from_lua(
    servers: &[Rc<Topics>],
    topic: &mlua::String,
    data: &mlua::String,
    opts: Option<mlua::Table>,
) -> mlua::Result<usize> {
    let topic = topic.to_str()?;
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(mlua::Error::runtime(format!(
            "publish: a topic is 1 to {MAX_TOPIC_BYTES} bytes, got {}",
            topic.len()
        )));
    }
    let (msg_type, exclude) = match &opts {
        Some(t) => (
            t.get::<Option<String>>("msg_type")?,
            t.get::<Option<mlua::UserDataRef<crate::lua_connection::LuaConnection>>>("exclude")?
                .map(|c| c.0.info.id),
        ),
        None => (None, None),
    };
    let op = match msg_type.as_deref() {
        None | Some("TEXT") => opcode::TEXT,
        Some("BINARY") => opcode::BINARY,
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "publish: msg_type must be \"TEXT\" or \"BINARY\", got \"{other}\""
            )))
        }
    };
    let data = data.as_bytes();
    if op == opcode::TEXT && std::str::from_utf8(&data).is_err() {
        return Err(mlua::Error::runtime(
            "publish: a TEXT message must be UTF-8 (send binary with msg_type = \"BINARY\")",
        ));
    }
    Ok(servers
        .iter()
        .map(|t| t.publish(&topic, op, &data, exclude))
        .sum())
}
