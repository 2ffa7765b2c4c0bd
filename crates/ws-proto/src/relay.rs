//! relay: what a node owes Redis, kept in bounded memory. `Outbox` holds the messages
//! published here and not yet acknowledged by Redis, bounded in bytes (a message that
//! would go over the bound is refused, for the caller to count as dropped). `Wanted` is
//! the set of channels this node wants from Redis against the set Redis was last told:
//! a subscribe and an unsubscribe of the same channel between two syncs cancel out, so
//! what is kept is bounded by the number of distinct channels with local subscribers,
//! not by the number of changes.

use std::collections::{BTreeSet, VecDeque};

/// A message for a Redis channel.
#[derive(Debug)]
pub struct Outgoing {
    pub channel: String,
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// What it counts against the bound.
    pub fn size(&self) -> usize {
        self.channel.len() + self.payload.len()
    }
}

/// Messages waiting for Redis, bounded in bytes. A batch taken for a round trip stays
/// counted until it is settled.
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    /// Bytes queued plus bytes in a batch not yet settled.
    bytes: usize,
    limit: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Queues `message`; gives it back when it would take the bytes held over the limit.
    pub fn push(&mut self, message: Outgoing) -> Result<(), Outgoing> {
        let size = message.size();
        if self.bytes + size > self.limit {
            return Err(message);
        }
        self.bytes += size;
        self.queue.push_back(message);
        Ok(())
    }

    /// The oldest messages for one round trip: at least one (when any), then more while
    /// under `max_messages` and `max_bytes`. Their bytes stay counted until
    /// [`Outbox::settle`].
    pub fn take_batch(&mut self, max_messages: usize, max_bytes: usize) -> Vec<Outgoing> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.queue.front() {
            if !batch.is_empty() && (batch.len() == max_messages || bytes + next.size() > max_bytes)
            {
                break;
            }
            bytes += next.size();
            batch.extend(self.queue.pop_front());
        }
        batch
    }

    /// A batch of `bytes` was answered (or given up): its bytes are free again.
    pub fn settle(&mut self, bytes: usize) {
        self.bytes -= bytes;
    }

    /// Empties the queue (Redis is down); returns how many messages were in it.
    pub fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.bytes -= self.queue.drain(..).map(|m| m.size()).sum::<usize>();
        n
    }

    /// Bytes queued and in flight.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bound on [`Outbox::bytes`].
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The channels wanted from Redis, reconciled with what Redis was told.
#[derive(Default)]
pub struct Wanted {
    wanted: BTreeSet<String>,
    told: BTreeSet<String>,
    /// Channels whose wanted state differs from what Redis was told.
    changed: BTreeSet<String>,
}

/// What to send Redis to bring it to the wanted set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
}

impl Wanted {
    /// `channel` is wanted (`true`) or not any more.
    pub fn set(&mut self, channel: &str, want: bool) {
        if want {
            self.wanted.insert(channel.to_owned());
        } else {
            self.wanted.remove(channel);
        }
        if self.told.contains(channel) == want {
            self.changed.remove(channel);
        } else {
            self.changed.insert(channel.to_owned());
        }
    }

    /// The changes not yet sent, taken as sent.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for channel in std::mem::take(&mut self.changed) {
            if self.wanted.contains(&channel) {
                self.told.insert(channel.clone());
                changes.subscribe.push(channel);
            } else {
                self.told.remove(&channel);
                changes.unsubscribe.push(channel);
            }
        }
        changes
    }

    /// Redis did not take the change of `channel` last taken by [`Wanted::take_changes`]:
    /// it has what it had before, and the change is pending again if still wanted.
    pub fn failed(&mut self, channel: &str) {
        if !self.told.remove(channel) {
            self.told.insert(channel.to_owned());
        }
        if self.told.contains(channel) == self.wanted.contains(channel) {
            self.changed.remove(channel);
        } else {
            self.changed.insert(channel.to_owned());
        }
    }

    /// A new connection to Redis: it has nothing, so everything wanted is to send.
    pub fn forget_told(&mut self) {
        self.told.clear();
        self.changed = self.wanted.clone();
    }

    /// Changes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.changed.len()
    }

    /// Channels Redis was told to send here.
    pub fn told(&self) -> usize {
        self.told.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, len: usize) -> Outgoing {
        Outgoing {
            channel: channel.into(),
            payload: vec![b'x'; len],
        }
    }

    #[test]
    fn the_outbox_refuses_a_message_that_would_go_over_its_byte_bound_and_takes_smaller_ones() {
        let mut outbox = Outbox::new(100);
        assert!(outbox.push(message("ws:a", 60)).is_ok());
        assert_eq!(outbox.bytes(), 64);
        let refused = outbox.push(message("ws:b", 40)).unwrap_err();
        assert_eq!(refused.channel, "ws:b");
        assert!(outbox.push(message("ws:c", 30)).is_ok());
        assert_eq!(outbox.bytes(), 98);
    }

    #[test]
    fn a_batch_stays_counted_until_settled_and_is_bounded_in_messages_and_bytes() {
        let mut outbox = Outbox::new(10_000);
        for i in 0..10 {
            outbox.push(message(&format!("ws:{i}"), 96)).unwrap();
        }
        let batch = outbox.take_batch(4, 10_000);
        assert_eq!(batch.len(), 4);
        assert_eq!(batch[0].channel, "ws:0");
        assert_eq!(outbox.bytes(), 1000);
        outbox.settle(batch.iter().map(Outgoing::size).sum());
        assert_eq!(outbox.bytes(), 600);
        assert_eq!(outbox.take_batch(64, 250).len(), 2);
    }

    #[test]
    fn a_message_larger_than_a_batch_goes_alone() {
        let mut outbox = Outbox::new(10_000);
        outbox.push(message("ws:a", 5_000)).unwrap();
        outbox.push(message("ws:b", 10)).unwrap();
        assert_eq!(outbox.take_batch(64, 1_000).len(), 1);
        assert_eq!(outbox.take_batch(64, 1_000).len(), 1);
    }

    #[test]
    fn clearing_the_outbox_counts_the_messages_and_frees_their_bytes_but_not_a_batch_in_flight() {
        let mut outbox = Outbox::new(10_000);
        for _ in 0..5 {
            outbox.push(message("ws:a", 6)).unwrap();
        }
        let batch = outbox.take_batch(2, 10_000);
        assert_eq!(outbox.clear(), 3);
        assert_eq!(outbox.bytes(), 20);
        outbox.settle(batch.iter().map(Outgoing::size).sum());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn a_subscribe_and_unsubscribe_before_a_sync_cost_nothing() {
        let mut wanted = Wanted::default();
        for i in 0..100_000 {
            let channel = format!("ws:t{i}");
            wanted.set(&channel, true);
            wanted.set(&channel, false);
        }
        assert_eq!(wanted.pending(), 0);
        assert_eq!(wanted.take_changes(), Changes::default());
    }

    #[test]
    fn changes_are_sent_once_and_an_unsubscribe_of_a_told_channel_is_sent() {
        let mut wanted = Wanted::default();
        wanted.set("ws:a", true);
        wanted.set("ws:b", true);
        let first = wanted.take_changes();
        assert_eq!(first.subscribe, ["ws:a", "ws:b"]);
        assert_eq!(wanted.take_changes(), Changes::default());
        assert_eq!(wanted.told(), 2);
        wanted.set("ws:a", false);
        wanted.set("ws:a", true);
        assert_eq!(
            wanted.pending(),
            0,
            "back to what Redis has: nothing to send"
        );
        wanted.set("ws:b", false);
        assert_eq!(
            wanted.take_changes(),
            Changes {
                subscribe: vec![],
                unsubscribe: vec!["ws:b".into()]
            }
        );
        assert_eq!(wanted.told(), 1);
    }

    #[test]
    fn a_change_redis_did_not_take_is_pending_again_unless_undone_meanwhile() {
        let mut wanted = Wanted::default();
        wanted.set("ws:a", true);
        wanted.set("ws:b", true);
        wanted.take_changes();
        wanted.failed("ws:a");
        assert_eq!(wanted.told(), 1);
        assert_eq!(wanted.take_changes().subscribe, ["ws:a"]);
        wanted.set("ws:b", false);
        wanted.take_changes();
        wanted.set("ws:b", true); // wanted again while the unsubscribe was under way
        wanted.failed("ws:b"); // ... which failed: Redis still sends ws:b, as wanted
        assert_eq!(wanted.pending(), 0);
        assert_eq!(wanted.told(), 2);
    }

    #[test]
    fn a_new_connection_is_told_the_whole_wanted_set_and_nothing_else() {
        let mut wanted = Wanted::default();
        wanted.set("ws:a", true);
        wanted.set("ws:b", true);
        wanted.take_changes();
        wanted.set("ws:b", false);
        wanted.set("ws:c", true);
        wanted.forget_told();
        assert_eq!(
            wanted.take_changes(),
            Changes {
                subscribe: vec!["ws:a".into(), "ws:c".into()],
                unsubscribe: vec![]
            }
        );
    }
}
