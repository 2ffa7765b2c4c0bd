//! pubsub: a server's topics across many server processes, through Redis. A publish goes
//! to the local subscribers at once (`topics`) and to Redis on channel `prefix .. topic`;
//! every node subscribes on Redis only to the topics it has local subscribers for, and
//! delivers what other nodes publish (its own messages, recognised by its node id, are
//! skipped). Redis down: local delivery goes on, publishes to Redis are dropped and
//! counted, and both connections come back by themselves with backoff (100 ms doubling to
//! 5 s), the subscriber resubscribing everything wanted. At most once; ordered per
//! publisher and topic (one publishing connection per node, one Redis).
//!
//! On Redis each message is `node id (16 hex digits) · 't' | 'b' · payload`.

use futures_core::Stream;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use ws_proto::codec::opcode;

/// Messages waiting for the Redis publisher; beyond, publishes to Redis are dropped.
const PUBLISH_QUEUE: usize = 10_000;
/// Messages sent to Redis in one round trip, at most.
const PUBLISH_BATCH: usize = 64;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The `pubsub` option of `ws.server`.
#[derive(Clone, Debug)]
pub struct PubsubOptions {
    /// `redis://[user:pass@]host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Prepended to a topic to make its Redis channel. Default `"ws:"`.
    pub channel_prefix: String,
}

/// What a node counts about Redis (`server:stats().pubsub`).
#[derive(Default)]
pub struct Counters {
    /// Messages published to Redis.
    pub sent: Cell<u64>,
    /// Messages from other nodes delivered here.
    pub received: Cell<u64>,
    /// Publishes to Redis dropped (Redis down or the queue full).
    pub dropped: Cell<u64>,
    /// Whether the subscribing connection is up.
    pub connected: Cell<bool>,
}

/// Where a message from another node goes: the local topics.
pub trait Deliver {
    fn deliver_remote(&self, topic: &str, op: u8, data: &[u8]);
}

/// A changes of the topics this node wants from Redis.
enum Want {
    Subscribe(String),
    Unsubscribe(String),
}

/// A fresh node id: 16 hex digits.
pub fn node_id() -> String {
    let mut id = [0u8; 8];
    ws_proto::random::fill(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// One server's link to Redis.
pub struct Bridge {
    node_id: String,
    prefix: String,
    wanted: Rc<RefCell<BTreeSet<String>>>,
    wants: mpsc::UnboundedSender<Want>,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    pub counters: Rc<Counters>,
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
        let wanted = Rc::new(RefCell::new(BTreeSet::new()));
        let (wants, wants_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::channel(PUBLISH_QUEUE);
        crate::standalone::runtime::spawn(subscriber(
            client.clone(),
            options.channel_prefix.clone(),
            node_id.clone(),
            Rc::clone(&wanted),
            wants_rx,
            deliver,
            Rc::clone(&counters),
            stop.clone(),
        ));
        crate::standalone::runtime::spawn(publisher(
            client,
            outgoing_rx,
            Rc::clone(&counters),
            stop,
        ));
        Bridge {
            node_id,
            prefix: options.channel_prefix.clone(),
            wanted,
            wants,
            outgoing,
            counters,
        }
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// `topic` has its first local subscriber: receive it from Redis.
    pub fn watch(&self, topic: &str) {
        let channel = self.channel(topic);
        self.wanted.borrow_mut().insert(channel.clone());
        let _ = self.wants.send(Want::Subscribe(channel));
    }

    /// `topic` has no local subscriber left.
    pub fn unwatch(&self, topic: &str) {
        let channel = self.channel(topic);
        self.wanted.borrow_mut().remove(&channel);
        let _ = self.wants.send(Want::Unsubscribe(channel));
    }

    /// Sends a message published here to the other nodes (dropped and counted when the
    /// queue to Redis is full).
    pub fn publish(&self, topic: &str, op: u8, data: &[u8]) {
        let mut payload = Vec::with_capacity(17 + data.len());
        payload.extend_from_slice(self.node_id.as_bytes());
        payload.push(if op == opcode::BINARY { b'b' } else { b't' });
        payload.extend_from_slice(data);
        if self
            .outgoing
            .try_send((self.channel(topic), payload))
            .is_err()
        {
            bump(&self.counters.dropped);
        }
    }
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
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

/// Keeps a subscribing connection to Redis for the wanted channels and delivers what
/// other nodes publish on them.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    client: redis::Client,
    prefix: String,
    node_id: String,
    wanted: Rc<RefCell<BTreeSet<String>>>,
    mut wants: mpsc::UnboundedReceiver<Want>,
    deliver: Weak<dyn Deliver>,
    counters: Rc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if let Ok(pubsub) = client.get_async_pubsub().await {
            let (mut sink, stream) = pubsub.split();
            let mut stream = Box::pin(stream);
            let all: Vec<String> = wanted.borrow().iter().cloned().collect();
            let mut ok = all.is_empty() || sink.subscribe(&all).await.is_ok();
            if ok {
                counters.connected.set(true);
                backoff = BACKOFF_FIRST;
            }
            while ok {
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
                            bump(&counters.received);
                        }
                        None => ok = false,
                    },
                    want = wants.recv() => match want {
                        Some(Want::Subscribe(c)) => ok = sink.subscribe(&c).await.is_ok(),
                        Some(Want::Unsubscribe(c)) => ok = sink.unsubscribe(&c).await.is_ok(),
                        None => return,
                    },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            counters.connected.set(false);
        }
        if !pause(&mut backoff, &mut stop).await {
            return;
        }
    }
}

/// Sends the queued messages to Redis, a batch per round trip; while Redis is down, what
/// is queued is dropped and counted.
async fn publisher(
    client: redis::Client,
    mut outgoing: mpsc::Receiver<(String, Vec<u8>)>,
    counters: Rc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            backoff = BACKOFF_FIRST;
            loop {
                let first = tokio::select! {
                    m = outgoing.recv() => match m { Some(m) => m, None => return },
                    _ = stop.wait_for(|s| *s) => return,
                };
                let mut batch = vec![first];
                while batch.len() < PUBLISH_BATCH {
                    match outgoing.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let mut pipe = redis::pipe();
                for (channel, payload) in &batch {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                if pipe.query_async::<()>(&mut conn).await.is_ok() {
                    counters.sent.set(counters.sent.get() + batch.len() as u64);
                } else {
                    counters
                        .dropped
                        .set(counters.dropped.get() + batch.len() as u64);
                    break;
                }
            }
        }
        // Down: what arrives meanwhile is dropped, not kept for later.
        while outgoing.try_recv().is_ok() {
            bump(&counters.dropped);
        }
        if !pause(&mut backoff, &mut stop).await {
            return;
        }
        while outgoing.try_recv().is_ok() {
            bump(&counters.dropped);
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
