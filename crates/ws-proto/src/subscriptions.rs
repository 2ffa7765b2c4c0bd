//! subscriptions: who subscribes to which topic, the rules of topic names and of the
//! per-subscriber limit, the check of what a publish was given, and the frame every
//! recipient's queue shares. Pure: both runtimes (a server's `Topics`, the evluaserver
//! registry) keep their subscribers in a [`Subscriptions`].

use crate::codec::{self, opcode};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// The default of `max_topics` (subscriptions per connection).
pub const DEFAULT_MAX_TOPICS: usize = 64;

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

/// Why a publish was refused (misuse: each runtime raises it as an error).
#[derive(Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The topic name is empty or longer than [`MAX_TOPIC_BYTES`] (its length).
    BadTopic(usize),
    /// `msg_type` is neither "TEXT" nor "BINARY".
    BadMsgType(String),
    /// A TEXT message that is not UTF-8.
    NotUtf8,
}

/// Checks what `publish` was given, in either runtime; the message's opcode.
pub fn check_publish(topic: &str, msg_type: Option<&str>, data: &[u8]) -> Result<u8, PublishError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(PublishError::BadTopic(topic.len()));
    }
    let op = match msg_type {
        None | Some("TEXT") => opcode::TEXT,
        Some("BINARY") => opcode::BINARY,
        Some(other) => return Err(PublishError::BadMsgType(other.to_owned())),
    };
    if op == opcode::TEXT && std::str::from_utf8(data).is_err() {
        return Err(PublishError::NotUtf8);
    }
    Ok(op)
}
