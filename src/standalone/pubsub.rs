//! pubsub: a server's topics across many server processes, through Redis. A publish goes
//! to the local subscribers at once (`topics`) and to Redis on channel `prefix .. topic`;
//! every node subscribes on Redis only to the topics it has local subscribers for, and
//! delivers what other nodes publish (its own messages, recognised by its node id, are
//! skipped). At most once; ordered per publisher and topic (one publishing connection per
//! node, one Redis).
//!
//! Memory is bounded (ws-proto's `relay`): messages wait for Redis in an outbox of at
//! most `max_queued_bytes` (a publish that does not fit is dropped and counted), and
//! subscription changes are kept as the wanted set, not as a queue. A round trip has no
//! timeout of its own: a batch sent is answered or its connection fails, so a loop busy
//! in Lua does not make Redis look down. Redis down (the connection refused or broken):
//! local delivery goes on, what is queued and what is published meanwhile is dropped and
//! counted, and both connections come back by themselves with backoff (100 ms doubling
//! to 5 s), the subscriber telling the new connection the whole wanted set.
//!
//! On Redis each message is `node id (16 hex digits) · 't' | 'b' · payload`.
use futures_core::Stream;
use redis::AsyncConnectionConfig;
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
/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 1_000;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The `pubsub` option of `ws.server`.
#[derive(Clone, Debug)]
pub struct PubsubOptions {
    /// `redis://[user:pass@]host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Prepended to a topic to make its Redis channel. Default `"ws:"`.
    pub channel_prefix: String,
    /// Bytes (channel names and payloads) waiting for Redis, at most.
    pub max_queued_bytes: usize,
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
    /// Whether the subscribing connection is up.
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
    outbox: RefCell<Outbox>,
    /// Something was queued for the publisher.
    queued: Notify,
    /// The publisher's last connection attempt failed: publishes are dropped at once.
    publisher_down: Cell<bool>,
    wanted: RefCell<Wanted>,
    /// The wanted set changed.
    changed: Notify,
    counters: Rc<Counters>,
}

/// One server's link to Redis.
pub struct Bridge {
    node_id: String,
    prefix: String,
    link: Rc<Link>,
    counters: Rc<Counters>,
}

impl Bridge {
    /// Checks the options; the tasks start with [`Bridge::start`].
    pub fn client(options: &PubsubOptions) -> Result<redis::Client, String> {
        redis::Client::open(options.url.as_str()).map_err(|e| {
            format!(
                "ws.server: pubsub.redis '{}' is not a Redis URL: {e}",
                options.url
            )
        })
    }

    /// Starts the subscriber and publisher tasks on the Lua state's runtime; they end
    /// when `stop` turns true.
    /// `node_id`: 16 hex digits naming this server (its workers share it: they reach each
    /// other without Redis).
    pub fn start(
        client: redis::Client,
        options: &PubsubOptions,
        node_id: String,
        deliver: Weak<dyn Deliver>,
        stop: watch::Receiver<bool>,
    ) -> Bridge {
        let counters = Rc::new(Counters::default());
        let link = Rc::new(Link {
            outbox: RefCell::new(Outbox::new(options.max_queued_bytes)),
            queued: Notify::new(),
            publisher_down: Cell::new(false),
            wanted: RefCell::default(),
            changed: Notify::new(),
            counters: Rc::clone(&counters),
        });
        crate::standalone::runtime::spawn(subscriber(
            client.clone(),
            options.channel_prefix.clone(),
            node_id.clone(),
            Rc::clone(&link),
            deliver,
            stop.clone(),
        ));
        crate::standalone::runtime::spawn(publisher(client, Rc::clone(&link), stop));
        Bridge {
            node_id,
            prefix: options.channel_prefix.clone(),
            link,
            counters,
        }
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
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
        if self.link.publisher_down.get() {
            bump(&self.counters.dropped, 1);
            return;
        }
        let mut payload = Vec::with_capacity(17 + data.len());
        payload.extend_from_slice(self.node_id.as_bytes());
        payload.push(if op == opcode::BINARY { b'b' } else { b't' });
        payload.extend_from_slice(data);
        let message = Outgoing {
            channel: self.channel(topic),
            payload,
        };
        if self.link.outbox.borrow_mut().push(message).is_ok() {
            self.link.queued.notify_one();
        } else {
            bump(&self.counters.dropped, 1);
        }
    }

    /// `server:stats().pubsub`: the counters, the bytes waiting for Redis (queued and in
    /// flight), subscription changes not yet sent, and the channels Redis was told.
    pub fn stats(&self, lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
        let c = &self.counters;
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

/// Keeps a subscribing connection to Redis told the wanted channels and delivers what
/// other nodes publish on them.
async fn subscriber(
    client: redis::Client,
    prefix: String,
    node_id: String,
    link: Rc<Link>,
    deliver: Weak<dyn Deliver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if let Ok(pubsub) = client.get_async_pubsub().await {
            let (mut sink, stream) = pubsub.split();
            let mut stream = Box::pin(stream);
            link.wanted.borrow_mut().forget_told();
            let mut ok = true;
            while ok {
                let changes = link.wanted.borrow_mut().take_changes();
                for channels in changes.subscribe.chunks(CHANNELS_PER_COMMAND) {
                    ok = ok && sink.subscribe(channels).await.is_ok();
                }
                for channels in changes.unsubscribe.chunks(CHANNELS_PER_COMMAND) {
                    ok = ok && sink.unsubscribe(channels).await.is_ok();
                }
                if !ok {
                    break;
                }
                if !link.counters.connected.replace(true) {
                    backoff = BACKOFF_FIRST;
                }
                tokio::select! {
                    msg = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)) => match msg {
                        Some(msg) => {
                            let Some(topic) = msg.get_channel_name().strip_prefix(prefix.as_str()) else { continue };
                            let payload = msg.get_payload_bytes();
                            if payload.len() < 17 || payload[..16] == *node_id.as_bytes() {
                                continue;
                            }
                            let op = if payload[16] == b'b' { opcode::BINARY } else { opcode::TEXT };
                            let Some(target) = deliver.upgrade() else { return };
                            target.deliver_remote(topic, op, &payload[17..]);
                            bump(&link.counters.received, 1);
                        }
                        None => ok = false,
                    },
                    _ = link.changed.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            link.counters.connected.set(false);
        }
        if !pause(&mut backoff, &mut stop).await {
            return;
        }
    }
}

/// Sends the outbox to Redis, a batch per round trip. A round trip waits as long as the
/// connection stands (no response timeout: a paused Redis fills the outbox up to its
/// bound, and the rest is dropped and counted); when the connection fails, the batch
/// and the outbox are dropped and counted, and so is every publish until it is back.
async fn publisher(client: redis::Client, link: Rc<Link>, mut stop: watch::Receiver<bool>) {
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut backoff = BACKOFF_FIRST;
    loop {
        if let Ok(mut conn) = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
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
                let (count, bytes) = (batch.len(), batch.iter().map(Outgoing::size).sum());
                let mut pipe = redis::pipe();
                for m in batch {
                    pipe.cmd("PUBLISH").arg(m.channel).arg(m.payload).ignore();
                }
                let answered = tokio::select! {
                    r = pipe.query_async::<()>(&mut conn) => r.is_ok(),
                    _ = stop.wait_for(|s| *s) => return,
                };
                link.outbox.borrow_mut().settle(bytes);
                if answered {
                    bump(&link.counters.sent, count);
                } else {
                    bump(&link.counters.dropped, count);
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

    fn options(url: &str) -> PubsubOptions {
        PubsubOptions {
            url: url.into(),
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
            assert!(Bridge::client(&options(ok)).is_ok(), "{ok}");
        }
        let err = Bridge::client(&options("http://127.0.0.1/")).unwrap_err();
        assert!(
            err.contains("pubsub.redis 'http://127.0.0.1/' is not a Redis URL"),
            "{err}"
        );
    }

    #[test]
    fn node_ids_are_16_hex_digits_and_differ() {
        let (a, b) = (node_id(), node_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
