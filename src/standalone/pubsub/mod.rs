//! pubsub: a server's topics across many server processes, through Redis — one instance
//! (`single`) or a Redis Cluster with sharded pub/sub (`cluster`). A publish goes to the
//! local subscribers at once (`topics`) and to Redis on channel `prefix .. topic`; every
//! node subscribes on Redis only to the topics it has local subscribers for, and delivers
//! what other nodes publish (its own messages, recognised by its node id, are skipped).
//! At most once; ordered per publisher and topic on one Redis (one publishing connection
//! per node).
//!
//! Memory is bounded (ws-proto's `relay`): messages wait for Redis in an outbox of at
//! most `max_queued_bytes` (a publish that does not fit is dropped and counted), and
//! subscription changes are kept as the wanted set, not as a queue. A round trip has no
//! timeout of its own: a batch sent is answered or its connection fails, so a loop busy
//! in Lua does not make Redis look down. Redis down (the connection refused or broken):
//! local delivery goes on, what is queued and what is published meanwhile is dropped and
//! counted, and the connections come back by themselves with backoff (100 ms doubling
//! to 5 s), the subscriber telling the new connection the whole wanted set.
//!
//! On Redis each message is `node id (16 hex digits) · 't' | 'b' · payload`.

mod cluster;
mod single;

use crate::standalone::runtime;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use ws_proto::codec::opcode;
use ws_proto::relay::{Outbox, Outgoing, Wanted};

/// Default of `pubsub.max_queued_bytes`.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;
/// One round trip to Redis carries at most this many messages...
const BATCH_MESSAGES: usize = 64;
/// ... and this many bytes (unless one message is larger).
const BATCH_BYTES: usize = 1 << 20;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the Redis of the `pubsub` option is.
#[derive(Clone, Debug)]
pub enum Redis {
    /// `redis = "redis://[user:pass@]host:port/db"` (or `rediss://` for TLS).
    One(String),
    /// `redis_cluster = {"redis://host:port", ...}`: some of the cluster's nodes.
    Cluster(Vec<String>),
}

/// The `pubsub` option of `ws.server`.
#[derive(Clone, Debug)]
pub struct PubsubOptions {
    pub redis: Redis,
    /// Prepended to a topic to make its Redis channel. Default `"ws:"`.
    pub channel_prefix: String,
    /// Bytes (channel names and payloads) waiting for Redis, at most.
    pub max_queued_bytes: usize,
}

impl PubsubOptions {
    /// Refuses URLs the `redis` crate does not take, naming them.
    pub fn check(&self) -> Result<(), String> {
        match &self.redis {
            Redis::One(url) => single::check(url),
            Redis::Cluster(urls) => cluster::check(urls),
        }
    }
}

/// What a node counts about Redis (`server:stats().pubsub`).
#[derive(Default)]
struct Counters {
    /// Messages published to Redis.
    sent: Cell<u64>,
    /// Messages from other nodes delivered here.
    received: Cell<u64>,
    /// Publishes to Redis dropped (Redis down or the outbox full).
    dropped: Cell<u64>,
    /// Whether the subscribing side is up (and, on a cluster, its last change went through).
    connected: Cell<bool>,
}

/// Where a message from another node goes: the local topics.
pub trait Deliver {
    fn deliver_remote(&self, topic: &str, op: u8, data: &[u8]);
}

/// A fresh node id: 16 hex digits.
pub fn node_id() -> String {
    let mut id = [0u8; 8];
    ws_proto::random::fill(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the bridge and its two tasks share.
struct Link {
    node_id: String,
    prefix: String,
    deliver: Weak<dyn Deliver>,
    outbox: RefCell<Outbox>,
    /// Something was queued for the publisher.
    queued: Notify,
    /// The publisher's last connection attempt failed: publishes are dropped at once.
    publisher_down: Cell<bool>,
    wanted: RefCell<Wanted>,
    /// The wanted set changed.
    changed: Notify,
    counters: Counters,
}

impl Link {
    /// A message from Redis on `channel`: delivered to the local topics unless it is this
    /// node's own. False when the topics are gone (the server ended).
    fn arrived(&self, channel: &str, payload: &[u8]) -> bool {
        let Some(topic) = channel.strip_prefix(self.prefix.as_str()) else {
            return true;
        };
        if payload.len() < 17 || payload[..16] == *self.node_id.as_bytes() {
            return true;
        }
        let op = if payload[16] == b'b' {
            opcode::BINARY
        } else {
            opcode::TEXT
        };
        let Some(target) = self.deliver.upgrade() else {
            return false;
        };
        target.deliver_remote(topic, op, &payload[17..]);
        bump(&self.counters.received, 1);
        true
    }
}

/// One server's link to Redis.
pub struct Bridge {
    link: Rc<Link>,
}

impl Bridge {
    /// Starts the subscriber and publisher tasks on the Lua state's runtime; they end
    /// when `stop` turns true.
    /// `node_id`: 16 hex digits naming this server (its workers share it: they reach each
    /// other without Redis).
    pub fn start(
        options: &PubsubOptions,
        node_id: String,
        deliver: Weak<dyn Deliver>,
        stop: watch::Receiver<bool>,
    ) -> Bridge {
        let link = Rc::new(Link {
            node_id,
            prefix: options.channel_prefix.clone(),
            deliver,
            outbox: RefCell::new(Outbox::new(options.max_queued_bytes)),
            queued: Notify::new(),
            publisher_down: Cell::new(false),
            wanted: RefCell::default(),
            changed: Notify::new(),
            counters: Counters::default(),
        });
        match &options.redis {
            Redis::One(url) => {
                runtime::spawn(single::subscriber(
                    url.clone(),
                    Rc::clone(&link),
                    stop.clone(),
                ));
                runtime::spawn(publisher(Connect::One(url.clone()), Rc::clone(&link), stop));
            }
            Redis::Cluster(urls) => {
                runtime::spawn(cluster::subscriber(
                    urls.clone(),
                    Rc::clone(&link),
                    stop.clone(),
                ));
                runtime::spawn(publisher(
                    Connect::Cluster(urls.clone()),
                    Rc::clone(&link),
                    stop,
                ));
            }
        }
        Bridge { link }
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.link.prefix)
    }

    /// `topic` has its first local subscriber: receive it from Redis.
    pub fn watch(&self, topic: &str) {
        self.want(topic, true);
    }

    /// `topic` has no local subscriber left.
    pub fn unwatch(&self, topic: &str) {
        self.want(topic, false);
    }

    fn want(&self, topic: &str, want: bool) {
        self.link
            .wanted
            .borrow_mut()
            .set(&self.channel(topic), want);
        self.link.changed.notify_one();
    }

    /// Sends a message published here to the other nodes (dropped and counted when Redis
    /// is down or the outbox has no room for it).
    pub fn publish(&self, topic: &str, op: u8, data: &[u8]) {
        let link = &self.link;
        if link.publisher_down.get() {
            bump(&link.counters.dropped, 1);
            return;
        }
        let mut payload = Vec::with_capacity(17 + data.len());
        payload.extend_from_slice(link.node_id.as_bytes());
        payload.push(if op == opcode::BINARY { b'b' } else { b't' });
        payload.extend_from_slice(data);
        let message = Outgoing {
            channel: self.channel(topic),
            payload,
        };
        if link.outbox.borrow_mut().push(message).is_ok() {
            link.queued.notify_one();
        } else {
            bump(&link.counters.dropped, 1);
        }
    }
    /// `server:stats().pubsub`: the counters, the bytes waiting for Redis (queued and in
    /// flight), subscription changes not yet sent, and the channels Redis was told.
    pub fn stats(&self, lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
        let c = &self.link.counters;
        let wanted = self.link.wanted.borrow();
        let t = lua.create_table()?;
        t.set("sent", c.sent.get())?;
        t.set("received", c.received.get())?;
        t.set("dropped", c.dropped.get())?;
        t.set("connected", c.connected.get())?;
        t.set("queued_bytes", self.link.outbox.borrow().bytes())?;
        t.set("max_queued_bytes", self.link.outbox.borrow().limit())?;
        t.set("pending_subscriptions", wanted.pending())?;
        t.set("channels", wanted.told())?;
        Ok(t)
    }
}

fn bump(c: &Cell<u64>, n: usize) {
    c.set(c.get() + n as u64);
}

/// Waits `backoff` (or until stopped: false) and doubles it.
async fn pause(backoff: &mut Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = crate::standalone::timers::sleep(*backoff) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    !stopped
}

/// How the publisher reaches Redis.
enum Connect {
    One(String),
    Cluster(Vec<String>),
}

/// The publisher's connection.
enum Publishing {
    One(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// What became of a batch.
struct Sent {
    sent: usize,
    dropped: usize,
    /// The connection failed: make a new one.
    broken: bool,
}

impl Connect {
    async fn open(&self) -> redis::RedisResult<Publishing> {
        Ok(match self {
            Connect::One(url) => Publishing::One(single::publishing(url).await?),
            Connect::Cluster(urls) => Publishing::Cluster(cluster::publishing(urls).await?),
        })
    }
}

impl Publishing {
    async fn send(&mut self, batch: Vec<Outgoing>) -> Sent {
        match self {
            Publishing::One(conn) => single::send(conn, batch).await,
            Publishing::Cluster(conn) => cluster::send(conn, batch).await,
        }
    }
}

/// Sends the outbox to Redis, a batch per round trip. A round trip waits as long as the
/// connection stands (no response timeout: a paused Redis fills the outbox up to its
/// bound, and the rest is dropped and counted); when the connection fails, the batch
/// and the outbox are dropped and counted, and so is every publish until it is back.
async fn publisher(connect: Connect, link: Rc<Link>, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if let Ok(mut conn) = connect.open().await {
            link.publisher_down.set(false);
            backoff = BACKOFF_FIRST;
            loop {
                let batch = link
                    .outbox
                    .borrow_mut()
                    .take_batch(BATCH_MESSAGES, BATCH_BYTES);
                if batch.is_empty() {
                    tokio::select! {
                        _ = link.queued.notified() => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                let bytes = batch.iter().map(Outgoing::size).sum();
                let result = tokio::select! {
                    r = conn.send(batch) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                link.outbox.borrow_mut().settle(bytes);
                bump(&link.counters.sent, result.sent);
                bump(&link.counters.dropped, result.dropped);
                if result.broken {
                    break;
                }
            }
        }
        link.publisher_down.set(true);
        let queued = link.outbox.borrow_mut().clear();
        bump(&link.counters.dropped, queued);
        if !pause(&mut backoff, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(redis: Redis) -> PubsubOptions {
        PubsubOptions {
            redis,
            channel_prefix: "ws:".into(),
            max_queued_bytes: MAX_QUEUED_BYTES,
        }
    }

    #[test]
    fn redis_urls_with_auth_and_tls_are_taken_and_others_refused_with_the_url() {
        for ok in [
            "redis://127.0.0.1:6379/0",
            "redis://user:secret@127.0.0.1:6379/2",
            "rediss://cache.example:6380/0",
        ] {
            assert!(options(Redis::One(ok.into())).check().is_ok(), "{ok}");
        }
        let err = options(Redis::One("http://127.0.0.1/".into()))
            .check()
            .unwrap_err();
        assert!(
            err.contains("pubsub.redis 'http://127.0.0.1/' is not a Redis URL"),
            "{err}"
        );
    }

    #[test]
    fn cluster_node_urls_are_checked_one_by_one_and_an_empty_list_refused() {
        let nodes = |urls: &[&str]| Redis::Cluster(urls.iter().map(|u| u.to_string()).collect());
        assert!(
            options(nodes(&["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]))
                .check()
                .is_ok()
        );
        let err = options(nodes(&["redis://127.0.0.1:7000", "http://x/"]))
            .check()
            .unwrap_err();
        assert!(
            err.contains("pubsub.redis_cluster[2] 'http://x/' is not a Redis URL"),
            "{err}"
        );
        let err = options(nodes(&[])).check().unwrap_err();
        assert!(err.contains("pubsub.redis_cluster"), "{err}");
    }

    #[test]
    fn node_ids_are_16_hex_digits_and_differ() {
        let (a, b) = (node_id(), node_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
