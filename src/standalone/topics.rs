//! topics: publish/subscribe inside one server. Which connections subscribe to which
//! topic, and publishing a message to all of them: the frame is encoded once and its bytes
//! shared by every recipient's queue. A recipient whose queue is over `send_buffer` is a
//! slow subscriber: it misses the message (counted) or is closed with 1008, as the
//! server's `slow_subscriber` option says. A connection leaves its topics when it ends.

use crate::standalone::connection::Connection;
use crate::standalone::pubsub::{Bridge, Deliver};
use crate::standalone::runtime;
use crate::standalone::workers::Mesh;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use ws_proto::engine::LocalClose;
use ws_proto::subscriptions::{published_frame, SubscribeError, Subscriptions};

/// What happens to a subscriber whose queue is full when a message is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// It misses the message (counted in `stats().publish_dropped`).
    Drop,
    /// It is closed with 1008 "slow subscriber".
    Close,
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

    /// `server:stats().pubsub`, when there is a bridge.
    pub fn bridge_stats(&self, lua: &mlua::Lua) -> mlua::Result<Option<mlua::Table>> {
        self.bridge
            .borrow()
            .as_ref()
            .map(|b| b.stats(lua))
            .transpose()
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
        let now = runtime::now();
        let mut delivered = 0;
        for conn in recipients {
            if conn.engine().is_full() {
                match self.slow {
                    SlowSubscriber::Drop => self.dropped.set(self.dropped.get() + 1),
                    SlowSubscriber::Close => conn.fail(LocalClose::SlowSubscriber),
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
