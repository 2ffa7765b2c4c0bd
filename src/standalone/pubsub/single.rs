//! single: the bridge on one Redis instance. The subscriber keeps a pub/sub connection
//! told the wanted channels (SUBSCRIBE / UNSUBSCRIBE, many channels a command); the
//! publisher sends a batch as one pipeline of PUBLISH commands, all answered or the
//! connection broken.

use super::{pause, Link, Sent, BACKOFF_FIRST};
use futures_core::Stream;
use redis::AsyncConnectionConfig;
use std::rc::Rc;
use tokio::sync::watch;
use ws_proto::relay::Outgoing;

/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 1_000;

/// Refuses a URL the `redis` crate does not take.
pub fn check(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("ws.server: pubsub.redis '{url}' is not a Redis URL: {e}"))
}

/// Keeps a subscribing connection to Redis told the wanted channels and delivers what
/// other nodes publish on them.
pub async fn subscriber(url: String, link: Rc<Link>, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let pubsub = match redis::Client::open(url.as_str()) {
            Ok(c) => c.get_async_pubsub().await,
            Err(e) => Err(e),
        };
        if let Ok(pubsub) = pubsub {
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
                            if !link.arrived(msg.get_channel_name(), msg.get_payload_bytes()) {
                                return;
                            }
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

/// The publisher's connection: multiplexed, with no response timeout (see `publisher`).
pub async fn publishing(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// One pipeline for the batch: all sent, or all dropped and the connection broken.
pub async fn send(conn: &mut redis::aio::MultiplexedConnection, batch: Vec<Outgoing>) -> Sent {
    let count = batch.len();
    let mut pipe = redis::pipe();
    for m in batch {
        pipe.cmd("PUBLISH").arg(m.channel).arg(m.payload).ignore();
    }
    let ok = pipe.query_async::<()>(conn).await.is_ok();
    Sent {
        sent: if ok { count } else { 0 },
        dropped: if ok { 0 } else { count },
        broken: !ok,
    }
}
