//! The ceiling: a pure-Rust tokio-tungstenite echo server on one thread.
//!
//!     tt_echo [PORT]    prints "listening on ws://127.0.0.1:PORT", echoes text and binary
//!
//! `forward` feeds every message read into the sink and flushes once the stream has no
//! more ready, the batching a tuned Rust server would do.
use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(0, |p| p.parse().expect("PORT must be a number"));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("listening on ws://{}", listener.local_addr().expect("addr"));
    let config = WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            else {
                return;
            };
            let (write, read) = ws.split();
            let _ = read
                .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
                .forward(write)
                .await;
        });
    }
}
