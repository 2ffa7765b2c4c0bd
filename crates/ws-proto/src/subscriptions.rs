//! subscriptions: who subscribes to which topic, the rules of topic names and of the
//! per-subscriber limit, the check of what a publish was given, and the frame every
//! recipient's queue shares. Pure: both runtimes (a server's `Topics`, the evluaserver
//! registry) keep their subscribers in a [`Subscriptions`].

use crate::codec::{self, opcode};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

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
    by_topic: HashMap<Arc<str>, BTreeSet<K>>,
    /// Each subscriber's topics, sorted; the names are shared with `by_topic` (a
    /// subscription costs an entry here and one there, not a copy of its name).
    by_key: HashMap<K, Vec<Arc<str>>>,
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
        let topics = self.by_key.entry(key.clone()).or_default();
        let Err(at) = topics.binary_search_by(|t| (**t).cmp(topic)) else {
            return Ok(());
        };
        if topics.len() >= self.max_topics {
            return Err(SubscribeError::TooMany(self.max_topics));
        }
        let name = match self.by_topic.get_key_value(topic) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(topic),
        };
        topics.reserve_exact(1);
        topics.insert(at, Arc::clone(&name));
        self.by_topic.entry(name).or_default().insert(key.clone());
        Ok(())
    }

    /// Unsubscribes `key` from `topic`; whether it was subscribed.
    pub fn unsubscribe(&mut self, key: &K, topic: &str) -> bool {
        let Some(topics) = self.by_key.get_mut(key) else {
            return false;
        };
        let Ok(at) = topics.binary_search_by(|t| (**t).cmp(topic)) else {
            return false;
        };
        topics.remove(at);
        if topics.is_empty() {
            self.by_key.remove(key);
        }
        self.leave(key, topic);
        true
    }

    /// Takes `key` out of `topic`'s subscribers (and the topic out once it has none).
    fn leave(&mut self, key: &K, topic: &str) {
        if let Some(subs) = self.by_topic.get_mut(topic) {
            subs.remove(key);
            if subs.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    /// The topics `key` subscribes to, in order.
    pub fn topics_of(&self, key: &K) -> Vec<String> {
        self.by_key
            .get(key)
            .map(|topics| topics.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    /// `key` has ended: it leaves every topic.
    pub fn leave_all(&mut self, key: &K) {
        for topic in self.by_key.remove(key).unwrap_or_default() {
            self.leave(key, &topic);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscribers_topics_are_listed_in_order_once_each_up_to_the_limit() {
        let mut subs = Subscriptions::new(3);
        for topic in ["b", "a", "c", "a"] {
            subs.subscribe(&1, topic).unwrap();
        }
        assert_eq!(subs.topics_of(&1), ["a", "b", "c"]);
        assert_eq!(subs.subscribe(&1, "d"), Err(SubscribeError::TooMany(3)));
        assert_eq!(subs.subscribe(&1, ""), Err(SubscribeError::BadName));
        assert_eq!(subs.subscribe(&1, &"x".repeat(257)), Err(SubscribeError::BadName));
    }

    #[test]
    fn a_topic_lasts_as_long_as_it_has_subscribers() {
        let mut subs = Subscriptions::new(DEFAULT_MAX_TOPICS);
        subs.subscribe(&1, "news").unwrap();
        subs.subscribe(&2, "news").unwrap();
        subs.subscribe(&2, "sport").unwrap();
        assert_eq!(subs.subscribers("news").collect::<Vec<_>>(), [&1, &2]);
        assert!(subs.unsubscribe(&1, "news"));
        assert!(!subs.unsubscribe(&1, "news"), "not subscribed any more");
        assert_eq!(subs.topics_of(&1), Vec::<String>::new());
        subs.leave_all(&2);
        assert_eq!(subs.subscribers("news").count(), 0);
        assert_eq!(subs.subscribers("sport").count(), 0);
        assert!(subs.by_topic.is_empty() && subs.by_key.is_empty(), "nothing kept");
    }
}
