//! topics: publish/subscribe inside one server. Which connections subscribe to which
//! topic, and publishing a message to all of them: the frame is encoded once and its bytes
//! shared by every recipient's queue. A recipient whose queue is over `send_buffer` is a
//! slow subscriber: it misses the message (counted) or is closed with 1008, as the
//! server's `slow_subscriber` option says. A connection leaves its topics when it ends.

use crate::codec::{self, close_code, opcode};
use crate::connection::Connection;
use crate::pubsub::{self, Bridge, Deliver};
use crate::workers::Mesh;
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
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

/// Who subscribes to what, for any kind of subscriber key (a connection id here, a
/// descriptor and id in the evluaserver runtime): the rules — names, the per-subscriber
/// limit, subscribing twice, leaving everything at the end — in one place.
pub struct Subscriptions<K> {
    by_topic: HashMap<String, BTreeSet<K>>,
    by_key: HashMap<K, BTreeSet<String>>,
    max_topics: usize,
}

impl<K: Ord + Hash + Clone> Subscriptions<K> {
    pub fn new(max_topics: usize) -> Self {
        Subscriptions {
            by_topic: HashMap::new(),
            by_key: HashMap::new(),
            max_topics,
        }
    }

    /// Subscribes `key` to `topic`; subscribing twice is one subscription.
    pub fn subscribe(&mut self, key: &K, topic: &str) -> Result<(), SubscribeError> {
        if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
            return Err(SubscribeError::BadName);
        }
        let set = self.by_key.entry(key.clone()).or_default();
        if set.contains(topic) {
            return Ok(());
        }
        if set.len() >= self.max_topics {
            return Err(SubscribeError::TooMany(self.max_topics));
        }
        set.insert(topic.to_owned());
        self.by_topic
            .entry(topic.to_owned())
            .or_default()
            .insert(key.clone());
        Ok(())
    }

    /// Unsubscribes `key` from `topic`; whether it was subscribed.
    pub fn unsubscribe(&mut self, key: &K, topic: &str) -> bool {
        let was = self
            .by_key
            .get_mut(key)
            .is_some_and(|set| set.remove(topic));
        if was {
            if let Some(subs) = self.by_topic.get_mut(topic) {
                subs.remove(key);
                if subs.is_empty() {
                    self.by_topic.remove(topic);
                }
            }
        }
        was
    }

    /// The topics `key` subscribes to, in order.
    pub fn topics_of(&self, key: &K) -> Vec<String> {
        self.by_key
            .get(key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `key` has ended: it leaves every topic.
    pub fn leave_all(&mut self, key: &K) {
        for topic in self.topics_of(key) {
            self.unsubscribe(key, &topic);
        }
        self.by_key.remove(key);
    }

    /// The subscribers of `topic`.
    pub fn subscribers(&self, topic: &str) -> impl Iterator<Item = &K> {
        self.by_topic.get(topic).into_iter().flatten()
    }
}

/// A published message as every recipient's queue holds it: one unmasked frame, encoded
/// once.
pub fn published_frame(op: u8, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(data.len() + codec::MAX_HEADER_LEN);
    codec::encode_frame(&mut frame, true, op, data, None);
    frame.freeze()
}

/// One server's topics (standalone runtime).
pub struct Topics {
    subscriptions: RefCell<Subscriptions<u64>>,
    /// The subscribed connections, by id.
    connections: RefCell<HashMap<u64, Weak<Connection>>>,
    pub slow: SlowSubscriber,
    /// Deliveries skipped because the subscriber's queue was full.
    pub dropped: Cell<u64>,
    /// Messages published (each counted once, whatever the number of recipients).
    pub published: Cell<u64>,
    /// The link to other nodes through Redis (the `pubsub` option).
    bridge: RefCell<Option<Bridge>>,
    /// The other workers of this server (the `workers` option).
    siblings: RefCell<Option<Rc<Mesh>>>,
}

impl Deliver for Topics {
    fn deliver_remote(&self, topic: &str, op: u8, data: &[u8]) {
        self.publish_local(topic, op, data, None);
    }
}

impl Topics {
    pub fn new(max_topics: usize, slow: SlowSubscriber) -> Self {
        Topics {
            subscriptions: RefCell::new(Subscriptions::new(max_topics)),
            connections: RefCell::default(),
            slow,
            dropped: Cell::new(0),
            published: Cell::new(0),
            bridge: RefCell::new(None),
            siblings: RefCell::new(None),
        }
    }

    /// Publishes reach the other workers too.
    pub fn set_siblings(&self, mesh: Rc<Mesh>) {
        *self.siblings.borrow_mut() = Some(mesh);
    }

    /// Links these topics to other nodes through Redis.
    pub fn set_bridge(&self, bridge: Bridge) {
        *self.bridge.borrow_mut() = Some(bridge);
    }

    /// The Redis counters, when there is a bridge.
    pub fn bridge_counters(&self) -> Option<Rc<pubsub::Counters>> {
        self.bridge
            .borrow()
            .as_ref()
            .map(|b| Rc::clone(&b.counters))
    }

    fn has_subscribers(&self, topic: &str) -> bool {
        self.subscriptions
            .borrow()
            .subscribers(topic)
            .next()
            .is_some()
    }

    pub fn subscribe(&self, conn: &Rc<Connection>, topic: &str) -> Result<(), SubscribeError> {
        let id = conn.info.id;
        let new_topic = !self.has_subscribers(topic);
        self.subscriptions.borrow_mut().subscribe(&id, topic)?;
        self.connections
            .borrow_mut()
            .insert(id, Rc::downgrade(conn));
        if new_topic {
            if let Some(b) = self.bridge.borrow().as_ref() {
                b.watch(topic);
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&self, id: u64, topic: &str) -> bool {
        let was = self.subscriptions.borrow_mut().unsubscribe(&id, topic);
        if was && !self.has_subscribers(topic) {
            if let Some(b) = self.bridge.borrow().as_ref() {
                b.unwatch(topic);
            }
        }
        was
    }

    pub fn topics_of(&self, id: u64) -> Vec<String> {
        self.subscriptions.borrow().topics_of(&id)
    }

    /// Connection `id` has ended.
    pub fn leave_all(&self, id: u64) {
        for topic in self.topics_of(id) {
            self.unsubscribe(id, &topic);
        }
        self.subscriptions.borrow_mut().leave_all(&id);
        self.connections.borrow_mut().remove(&id);
    }

    /// Publishes here, to the other workers and, with a bridge, to the other nodes; the
    /// number of connections of this worker it was queued for.
    pub fn publish(&self, topic: &str, op: u8, data: &[u8], exclude: Option<u64>) -> usize {
        if let Some(b) = self.bridge.borrow().as_ref() {
            b.publish(topic, op, data);
        }
        if let Some(m) = self.siblings.borrow().as_ref() {
            self.dropped
                .set(self.dropped.get() + m.publish(topic, op, data));
        }
        self.publish_local(topic, op, data, exclude)
    }

    /// Sends `data` (opcode `op`, text already checked as UTF-8) to every open local
    /// subscriber of `topic` but `exclude`; the number of connections it was queued for.
    pub fn publish_local(&self, topic: &str, op: u8, data: &[u8], exclude: Option<u64>) -> usize {
        self.published.set(self.published.get() + 1);
        let recipients: Vec<Rc<Connection>> = {
            let connections = self.connections.borrow();
            self.subscriptions
                .borrow()
                .subscribers(topic)
                .filter(|id| Some(**id) != exclude)
                .filter_map(|id| connections.get(id)?.upgrade())
                .collect()
        };
        if recipients.is_empty() {
            return 0;
        }
        let frame = published_frame(op, data);
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

/// Checks what `publish` was given, in either runtime; the message's opcode. Misuse (a bad
/// `msg_type`, text that is not UTF-8, a topic name that is empty or too long) raises.
pub fn check_publish(topic: &str, msg_type: Option<&str>, data: &[u8]) -> mlua::Result<u8> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(mlua::Error::runtime(format!(
            "publish: a topic is 1 to {MAX_TOPIC_BYTES} bytes, got {}",
            topic.len()
        )));
    }
    let op = match msg_type {
        None | Some("TEXT") => opcode::TEXT,
        Some("BINARY") => opcode::BINARY,
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "publish: msg_type must be \"TEXT\" or \"BINARY\", got \"{other}\""
            )))
        }
    };
    if op == opcode::TEXT && std::str::from_utf8(data).is_err() {
        return Err(mlua::Error::runtime(
            "publish: a TEXT message must be UTF-8 (send binary with msg_type = \"BINARY\")",
        ));
    }
    Ok(op)
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
    let (msg_type, exclude) = match &opts {
        Some(t) => (
            t.get::<Option<String>>("msg_type")?,
            t.get::<Option<mlua::UserDataRef<crate::lua_connection::LuaConnection>>>("exclude")?
                .map(|c| c.0.info.id),
        ),
        None => (None, None),
    };
    let data = data.as_bytes();
    let op = check_publish(&topic, msg_type.as_deref(), &data)?;
    Ok(servers
        .iter()
        .map(|t| t.publish(&topic, op, &data, exclude))
        .sum())
}
