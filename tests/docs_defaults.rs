//! The docs' option tables (`ws.server{...}` in docs/server.md, `ws.connect{...}` in
//! docs/client.md, `compression` in docs/compression.md) state the defaults the code has: a
//! default changed in one place and not the other fails here.

use service_utils_ws::standalone::server_options::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_SHUTDOWN_TIMEOUT,
};
use std::time::Duration;
use ws_proto::deflate::Config;
use ws_proto::engine::{Settings, SERVER_PING_INTERVAL};

fn size(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

fn secs(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{} s", d.as_secs()),
        None => "0 (off)".into(),
    }
}

/// `12345` as the docs write it: `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_option_tables_of_the_docs_state_the_defaults_of_the_code() {
    let docs = ["server.md", "client.md", "compression.md"]
        .iter()
        .map(|page| {
            let path = format!("{}/docs/{page}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(&path).expect(&path)
        })
        .collect::<String>();
    let d = Settings::default();
    let both = [
        ("max_message_size", size(d.limits.max_message_size)),
        ("close_timeout", secs(Some(d.close_timeout))),
        ("send_buffer", size(d.send_buffer)),
        ("send_timeout", secs(d.send_timeout)),
        ("idle_timeout", secs(d.idle_timeout)),
    ];
    let server = [
        (
            "max_header_bytes` / `max_headers",
            format!("{DEFAULT_MAX_HEADER_BYTES} / {DEFAULT_MAX_HEADERS}"),
        ),
        ("handshake_timeout", secs(Some(DEFAULT_HANDSHAKE_TIMEOUT))),
        ("shutdown_timeout", secs(Some(DEFAULT_SHUTDOWN_TIMEOUT))),
        ("max_connections", grouped(DEFAULT_MAX_CONNECTIONS)),
        (
            "ping_interval` / `pong_timeout",
            format!(
                "{} / {}",
                secs(Some(SERVER_PING_INTERVAL)),
                secs(Some(d.pong_timeout))
            ),
        ),
    ];
    let client = [(
        "ping_interval` / `pong_timeout",
        format!("{} / {}", secs(d.ping_interval), secs(Some(d.pong_timeout))),
    )];
    let c = Config::default();
    assert_eq!(
        Config::client_default().server_max_window_bits,
        15,
        "the docs say a client does not ask the server's window to shrink"
    );
    let compression = [
        (
            "server_max_window_bits",
            format!(
                "{} ({} KiB)",
                c.server_max_window_bits,
                (1 << c.server_max_window_bits) >> 10
            ),
        ),
        (
            "client_max_window_bits",
            c.client_max_window_bits.to_string(),
        ),
        ("mem_level", c.mem_level.to_string()),
        ("level", c.level.to_string()),
        ("threshold", c.threshold.to_string()),
        (
            "server_no_context_takeover` / `client_no_context_takeover",
            format!(
                "`{}`",
                c.server_no_context_takeover || c.client_no_context_takeover
            ),
        ),
    ];
    for (name, default) in both
        .iter()
        .chain(&server)
        .chain(&client)
        .chain(&compression)
    {
        let row = format!("| `{name}` | {default} |");
        assert!(docs.contains(&row), "docs/ have no row starting {row}");
    }
    for (name, _) in &both {
        let rows = docs.matches(&format!("| `{name}` | ")).count();
        assert_eq!(rows, 2, "`{name}` should have a row in both tables");
    }
}
