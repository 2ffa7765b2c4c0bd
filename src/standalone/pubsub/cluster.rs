//! cluster: the bridge on a Redis Cluster with sharded pub/sub (Redis 7: SPUBLISH,
//! SSUBSCRIBE). A channel lives on the master that owns its hash slot, so messages and
//! subscriptions spread over the masters instead of every message reaching every Redis.
//! The `redis` crate's cluster connection follows the slot map (MOVED, a master
//! restarted) and subscribes again, on their new node, the channels it had confirmed; a
//! change it could not make (its master down) stays pending here and is tried again
//! with backoff. A publish whose master is down is dropped and counted; the others go on.

use super::{pause, Link, Sent, BACKOFF_FIRST, BACKOFF_MAX};
use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use ws_proto::relay::Outgoing;

/// Attempts of one command on a cluster whose master for it does not answer (the crate
/// waits between them); then it is given up: a publish dropped, a change tried later.
const RETRIES: u32 = 2;

/// Refuses an empty list or a URL the `redis` crate does not take.
pub fn check(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err(
            "ws.server: pubsub.redis_cluster must list at least one node's redis:// URL".into(),
        );
    }
    for (i, url) in urls.iter().enumerate() {
        redis::Client::open(url.as_str()).map_err(|e| {
            format!(
                "ws.server: pubsub.redis_cluster[{}] '{url}' is not a Redis URL: {e}",
                i + 1
            )
        })?;
    }
    Ok(())
}

fn builder(urls: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(urls.to_vec())
        .retries(RETRIES)
        .connection_timeout(Duration::from_secs(1))
}

/// Keeps the cluster told the wanted channels (SSUBSCRIBE / SUNSUBSCRIBE, one channel a
/// command: channels of one command must share a slot) and delivers what other nodes
/// publish on them.
pub async fn subscriber(urls: Vec<String>, link: Rc<Link>, mut stop: watch::Receiver<bool>) {
    let (pushes_to, mut pushes) = mpsc::unbounded_channel();
    let client: ClusterClient = match builder(&urls)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes_to)
        .build()
    {
        Ok(client) => client,
        Err(_) => return, // the URLs were checked with the options
    };
    let mut backoff = BACKOFF_FIRST;
    let mut conn = loop {
        if let Ok(conn) = client.get_async_connection().await {
            break conn;
        }
        if !pause(&mut backoff, &mut stop).await {
            return;
        }
    };
    backoff = BACKOFF_FIRST;
    loop {
        let all_told = tell(&mut conn, &link).await;
        link.counters.connected.set(all_told);
        if all_told {
            backoff = BACKOFF_FIRST;
        }
        let retry = crate::standalone::timers::sleep(backoff);
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return };
                let here = redis::Msg::from_push_info(push)
                    .is_none_or(|msg| link.arrived(msg.get_channel_name(), msg.get_payload_bytes()));
                if !here {
                    return;
                }
            }
            _ = link.changed.notified() => {}
            _ = retry, if !all_told => backoff = (backoff * 2).min(BACKOFF_MAX),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Sends the pending subscription changes; false when some failed (they stay pending).
async fn tell(conn: &mut ClusterConnection, link: &Link) -> bool {
    let changes = link.wanted.borrow_mut().take_changes();
    let mut all = true;
    for channel in changes.subscribe {
        if conn.ssubscribe(&channel).await.is_err() {
            link.wanted.borrow_mut().failed(&channel);
            all = false;
        }
    }
    for channel in changes.unsubscribe {
        if conn.sunsubscribe(&channel).await.is_err() {
            link.wanted.borrow_mut().failed(&channel);
            all = false;
        }
    }
    all
}

/// The publisher's connection (no response timeout: see `publisher`).
pub async fn publishing(urls: &[String]) -> redis::RedisResult<ClusterConnection> {
    builder(urls).build()?.get_async_connection().await
}

/// The batch's SPUBLISH commands, each to its channel's master, all under way together;
/// each counted sent or dropped. The connection repairs itself: never broken here.
pub async fn send(conn: &mut ClusterConnection, batch: Vec<Outgoing>) -> Sent {
    let count = batch.len();
    let answers = join_all(batch.into_iter().map(|m| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("SPUBLISH")
                .arg(m.channel)
                .arg(m.payload)
                .query_async::<i64>(&mut conn)
                .await
                .is_ok()
        }
    }))
    .await;
    let sent = answers.iter().filter(|ok| **ok).count();
    Sent {
        sent,
        dropped: count - sent,
        broken: false,
    }
}
