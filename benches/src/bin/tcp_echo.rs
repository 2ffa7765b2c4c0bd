//! The floor: raw TCP echo on one thread (what the machine does with no WebSocket at all).
//!
//!     tcp_echo [PORT]    prints "listening on tcp://127.0.0.1:PORT"
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(0, |p| p.parse().expect("PORT must be a number"));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!(
        "listening on tcp://{}",
        listener.local_addr().expect("addr")
    );
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (r, mut w) = stream.split();
            let mut r = tokio::io::BufReader::with_capacity(256 << 10, r);
            let _ = tokio::io::copy_buf(&mut r, &mut w).await;
        });
    }
}
