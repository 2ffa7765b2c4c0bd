//! The load generator of the benchmark: one thread, one JSON line of results per run.
//!
//!     loadgen echo  (--ws URL | --tcp HOST:PORT) --conns C --window W --size S --seconds T
//!                   [--regime pipelined|one] [--pid PID]
//!     loadgen storm --ws URL --count N --concurrency K [--pid PID]
//!     loadgen idle  (--ws URL | --tcp HOST:PORT) --count N [--pid PID]
//!     loadgen hold  --ws URL --count N --seconds T
//!
//! Any mode: `--ws` may be a wss:// URL (the server's certificate is not checked), and
//! `--sources 127.0.0.2,127.0.0.3` spreads the connections over those source addresses
//! (one address has about 28,000 ephemeral ports).
//!
//! echo: C connections each keep W messages of S bytes in flight for T seconds; reports
//! messages/s, MB/s each way, p50/p99 round-trip latency, errors, its own CPU time per
//! message and — with the server's PID — the server's, from /proc/PID/stat (on a 2-core
//! machine the load can be as busy as the server, so CPU per message is the fair
//! comparison). The handshake is tokio-tungstenite's; the frames are written and parsed
//! by hand (one pre-masked frame copied per message), so the load generator spends far
//! less per message than any server it measures. Two regimes:
//!   pipelined  each connection's writer writes all the frames it has credits for in one
//!              write; its reader returns a credit per echo. Many frames per syscall both
//!              ways.
//!   one        one frame per write (the many quiet clients case: the server sees one
//!              frame per read).
//!     loadgen fanout --ws URL --subscribers N --size S --window W --seconds T [--pid PID]
//!
//! storm: N connect + handshake + close cycles, K at a time; handshakes/s and CPU each.
//! fanout: N subscribers and one publisher on URL (a server that publishes each message
//! it gets to every other connection there); the publisher sends a message of S bytes
//! whenever fewer than W of its messages are still being delivered, for T seconds;
//! deliveries/s and the server's CPU per delivery.
//! idle: opens N connections and holds them; the server's RSS growth per connection.
//! hold: opens N connections, prints a line when they are open, then reads every one for
//! T seconds (answering pings: tungstenite queues the pong and writes it on the next read)
//! and reports how many saw a ping, how many are still open, the messages delivered and
//! the wall-clock time (Unix seconds) of the last first delivery — for the 100,000
//! connection run (benches/idle_100k.py), whose publisher is another process.
use futures_util::StreamExt;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `--key value` arguments.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("expected --option, got {k}"));
            let value = it.next().unwrap_or_else(|| panic!("--{key} needs a value"));
            map.insert(key.to_owned(), value.clone());
        }
        Args(map)
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn num(&self, key: &str, default: u64) -> u64 {
        self.str(key).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("--{key} must be a number"))
        })
    }
}

/// Where the server is and how to talk to it.
#[derive(Clone)]
enum Target {
    Ws(String),
    Tcp(String),
}

impl Target {
    fn from(args: &Args) -> Target {
        match (args.str("ws"), args.str("tcp")) {
            (Some(url), _) => Target::Ws(url.to_owned()),
            (None, Some(addr)) => Target::Tcp(addr.to_owned()),
            _ => panic!("give --ws URL or --tcp HOST:PORT"),
        }
    }
}

/// The server process, read from /proc.
struct ServerProc(Option<u32>);

impl ServerProc {
    /// CPU time (user + system) in microseconds.
    fn cpu_us(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0?)).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks * 1e6 / USER_HZ)
    }
    /// This process (the load generator itself).
    fn me() -> ServerProc {
        ServerProc(Some(std::process::id()))
    }
    fn rss_kib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

/// Clock ticks per second in /proc/PID/stat (USER_HZ): 100 on every Linux ABI we run on.
const USER_HZ: f64 = 100.0;

fn json_num(v: Option<f64>) -> String {
    v.map_or("null".into(), |v| format!("{v:.3}"))
}

#[derive(Default)]
struct EchoStats {
    messages: u64,
    latencies_us: Vec<u32>,
    errors: u64,
}

thread_local! {
    /// `--sources`: the local addresses connections are made from, in turn.
    static SOURCES: RefCell<(Vec<std::net::IpAddr>, usize)> = RefCell::default();
}

thread_local! {
    /// wss://: one TLS context for every connection (the benchmark's servers use a
    /// self-signed certificate, not checked).
    static TLS: native_tls::TlsConnector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .expect("a TLS context");
}

/// The next source address of `--sources`, if any.
fn next_source() -> Option<std::net::IpAddr> {
    SOURCES.with(|s| {
        let (list, next) = &mut *s.borrow_mut();
        let ip = list.get(*next % list.len().max(1)).copied();
        *next += 1;
        ip
    })
}

/// The `host:port` of a ws:// or wss:// URL.
fn authority(url: &str) -> Result<(String, u16), String> {
    let (secure, rest) = match url.split_once("://") {
        Some(("wss", rest)) => (true, rest),
        Some(("ws", rest)) => (false, rest),
        _ => return Err(format!("not a ws:// or wss:// URL: {url}")),
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    match host_port.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), p.parse().map_err(|_| format!("bad port in {url}"))?)),
        None => Ok((host_port.to_owned(), if secure { 443 } else { 80 })),
    }
}

async fn connect_ws(url: &str) -> Result<Ws, String> {
    let (host, port) = authority(url)?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    if let Some(ip) = next_source() {
        socket
            .bind(std::net::SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let connector = if url.starts_with("wss:") {
        tokio_tungstenite::Connector::NativeTls(TLS.with(Clone::clone))
    } else {
        tokio_tungstenite::Connector::Plain
    };
    // tungstenite's 128 KiB read buffer per connection would make 100,000 held
    // connections cost the load generator 13 GB; frames here are small.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096);
    let (ws, _) =
        tokio_tungstenite::client_async_tls_with_config(url, stream, Some(config), Some(connector))
            .await
            .map_err(|e| e.to_string())?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_nodelay(true);
    }
    Ok(ws)
}

async fn connect_tcp(addr: &str) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

enum Conn {
    Ws(Box<Ws>),
    Tcp(TcpStream),
}

async fn connect(target: &Target) -> Result<Conn, String> {
    match target {
        Target::Ws(url) => connect_ws(url).await.map(|ws| Conn::Ws(Box::new(ws))),
        Target::Tcp(addr) => connect_tcp(addr).await.map(Conn::Tcp),
    }
}

/// Opens `n` connections, `k` at a time; returns the open ones and the error count.
async fn connect_many(target: &Target, n: usize, k: usize) -> (Vec<Conn>, u64) {
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    let mut pending =
        futures_util::stream::iter((0..n).map(|_| connect(target))).buffer_unordered(k.max(1));
    while let Some(r) = pending.next().await {
        match r {
            Ok(c) => conns.push(c),
            Err(_) => errors += 1,
        }
    }
    (conns, errors)
}

/// One masked binary frame of `size` bytes, as a client sends it (the payload masked once,
/// so every copy of the frame is the same bytes).
fn client_frame(size: usize) -> Vec<u8> {
    let mask = [0x5a, 0xa5, 0x3c, 0xc3];
    let mut f = vec![0x82];
    match size {
        0..=125 => f.push(0x80 | size as u8),
        126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend((0..size).map(|i| b'x' ^ mask[i & 3]));
    f
}

/// The length of the server frame at the start of `buf` and whether it is a binary frame
/// of `size` bytes (an echo); `None` until the whole frame is there.
fn server_frame(buf: &[u8], size: usize) -> Option<(usize, bool)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let total = at + len;
    (buf.len() >= total).then_some((total, b0 & 0x0f == 2 && len == size))
}

/// The writing half of [`ws_echo`]: sends `frame` once per credit (pipelined: all it has
/// in one write), noting when; gives the write half back at the end.
#[allow(clippy::too_many_arguments)]
async fn echo_writer(
    mut tx: tokio::net::tcp::OwnedWriteHalf,
    frame: Vec<u8>,
    window: usize,
    pipelined: bool,
    sent_at: Rc<RefCell<VecDeque<Instant>>>,
    credits: Rc<Cell<usize>>,
    wake: Rc<tokio::sync::Notify>,
    stop: Rc<Cell<bool>>,
    stats: Rc<RefCell<EchoStats>>,
) -> tokio::net::tcp::OwnedWriteHalf {
    let mut batch = Vec::with_capacity(frame.len() * window);
    loop {
        let woken = wake.notified();
        if stop.get() {
            break;
        }
        let n = credits.replace(0);
        if n == 0 {
            woken.await;
            continue;
        }
        let now = Instant::now();
        for _ in 0..n {
            sent_at.borrow_mut().push_back(now);
            if pipelined {
                batch.extend_from_slice(&frame);
            } else if tx.write_all(&frame).await.is_err() {
                stats.borrow_mut().errors += 1;
                return tx;
            }
        }
        if pipelined {
            let written = tx.write_all(&batch).await;
            batch.clear();
            if written.is_err() {
                stats.borrow_mut().errors += 1;
                return tx;
            }
        }
    }
    tx
}

/// The echo load on one WebSocket, framed by hand so that the load generator costs little
/// per message (tokio-tungstenite's framing was its bottleneck): a writer task sends a
/// frame per credit — pipelined: all it has in one write; one: a write per frame — and this
/// task reads the echoes, records each and returns its credit.
async fn ws_echo(
    ws: Ws,
    size: usize,
    window: usize,
    pipelined: bool,
    stop: Rc<Cell<bool>>,
    stats: Rc<RefCell<EchoStats>>,
) {
    let MaybeTlsStream::Plain(tcp) = ws.into_inner() else {
        stats.borrow_mut().errors += 1;
        return;
    };
    let (mut rx, tx) = tcp.into_split();
    let sent_at: Rc<RefCell<VecDeque<Instant>>> =
        Rc::new(RefCell::new(VecDeque::with_capacity(window)));
    let credits = Rc::new(Cell::new(window));
    let wake = Rc::new(tokio::sync::Notify::new());
    let writer = tokio::task::spawn_local(echo_writer(
        tx,
        client_frame(size),
        window,
        pipelined,
        Rc::clone(&sent_at),
        Rc::clone(&credits),
        Rc::clone(&wake),
        Rc::clone(&stop),
        Rc::clone(&stats),
    ));
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    'reading: loop {
        if start > 0 && buf.len() - end < 64 * 1024 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match rx.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => {
                if !stop.get() {
                    stats.borrow_mut().errors += 1;
                }
                break;
            }
            Ok(n) => end += n,
        }
        while let Some((len, echo)) = server_frame(&buf[start..end], size) {
            start += len;
            if !echo {
                continue; // a ping or pong of the server's
            }
            let Some(t) = sent_at.borrow_mut().pop_front() else {
                break 'reading;
            };
            if !stop.get() {
                let mut s = stats.borrow_mut();
                s.messages += 1;
                s.latencies_us
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                credits.set(credits.get() + 1);
                wake.notify_one();
            } else if sent_at.borrow().is_empty() {
                break 'reading;
            }
        }
    }
    wake.notify_one();
    if let Ok(mut tx) = writer.await {
        // A masked close frame with no status (RFC 6455 §5.5.1).
        let _ = tx.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await;
    }
}

/// One connection of the echo mode: keeps `window` messages in flight until `stop`.
async fn echo_loop(
    conn: Conn,
    size: usize,
    window: usize,
    pipelined: bool,
    stop: Rc<Cell<bool>>,
    stats: Rc<RefCell<EchoStats>>,
) {
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let record = |t: Instant, stats: &RefCell<EchoStats>, stop: &Cell<bool>| {
        if !stop.get() {
            let mut s = stats.borrow_mut();
            s.messages += 1;
            s.latencies_us
                .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    };
    match conn {
        Conn::Ws(ws) => ws_echo(*ws, size, window, pipelined, stop, stats).await,
        Conn::Tcp(mut s) => {
            let payload = vec![b'x'; size];
            let mut burst = Vec::with_capacity(size * window);
            for _ in 0..window {
                in_flight.push_back(Instant::now());
                burst.extend_from_slice(&payload);
            }
            if s.write_all(&burst).await.is_err() {
                stats.borrow_mut().errors += 1;
                return;
            }
            let mut buf = vec![0u8; 256 * 1024];
            let mut partial = 0usize;
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if !stop.get() {
                            stats.borrow_mut().errors += 1;
                        }
                        break;
                    }
                    Ok(n) => n,
                };
                partial += n;
                let mut refill = 0;
                while partial >= size {
                    partial -= size;
                    let Some(t) = in_flight.pop_front() else {
                        break;
                    };
                    record(t, &stats, &stop);
                    if !stop.get() {
                        in_flight.push_back(Instant::now());
                        refill += 1;
                    }
                }
                if refill > 0 {
                    burst.clear();
                    for _ in 0..refill {
                        burst.extend_from_slice(&payload);
                    }
                    if s.write_all(&burst).await.is_err() {
                        stats.borrow_mut().errors += 1;
                        break;
                    }
                }
                if stop.get() && in_flight.is_empty() {
                    break;
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i] as f64)
}

async fn echo(args: &Args, target: Target, server: ServerProc) {
    let (conns, size, window, secs) = (
        args.num("conns", 1) as usize,
        args.num("size", 16) as usize,
        args.num("window", 1) as usize,
        args.num("seconds", 3),
    );
    let regime = args.str("regime").unwrap_or("pipelined");
    let pipelined = match regime {
        "pipelined" => true,
        "one" => false,
        other => panic!("--regime must be pipelined or one, got {other}"),
    };
    let (open, connect_errors) = connect_many(&target, conns, 64).await;
    let stop = Rc::new(Cell::new(false));
    let stats = Rc::new(RefCell::new(EchoStats::default()));
    let local = tokio::task::LocalSet::new();
    let me = ServerProc::me();
    let cpu0 = server.cpu_us();
    let my_cpu0 = me.cpu_us();
    let t0 = Instant::now();
    for c in open {
        local.spawn_local(echo_loop(
            c,
            size,
            window,
            pipelined,
            Rc::clone(&stop),
            Rc::clone(&stats),
        ));
    }
    let elapsed = local
        .run_until(async {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.set(true);
            t0.elapsed()
        })
        .await;
    let cpu1 = server.cpu_us();
    let my_cpu1 = me.cpu_us();
    // Let the connections drain what is in flight and close (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), local).await;
    let mut s = stats.borrow_mut();
    s.latencies_us.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let rate = s.messages as f64 / secs;
    let per_msg = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if s.messages > 0 => Some((b - a) / s.messages as f64),
        _ => None,
    };
    let cpu_per_msg = per_msg(cpu0, cpu1);
    let my_cpu_per_msg = per_msg(my_cpu0, my_cpu1);
    let my_busy = match (my_cpu0, my_cpu1) {
        (Some(a), Some(b)) => Some((b - a) / 1e6 / secs),
        _ => None,
    };
    println!(
        "{{\"mode\":\"echo\",\"regime\":\"{regime}\",\"label\":\"{}\",\"size\":{size},\"conns\":{conns},\"window\":{window},\"seconds\":{secs:.3},\"messages\":{},\"msgs_per_s\":{rate:.1},\"mb_per_s_each_way\":{:.3},\"p50_us\":{},\"p99_us\":{},\"errors\":{},\"server_cpu_us_per_msg\":{},\"loadgen_cpu_us_per_msg\":{},\"loadgen_busy\":{}}}",
        args.str("label").unwrap_or(""),
        s.messages,
        rate * size as f64 / 1e6,
        json_num(percentile(&s.latencies_us, 0.50)),
        json_num(percentile(&s.latencies_us, 0.99)),
        s.errors + connect_errors,
        json_num(cpu_per_msg),
        json_num(my_cpu_per_msg),
        json_num(my_busy),
    );
}

async fn storm(args: &Args, target: Target, server: ServerProc) {
    let Target::Ws(url) = target else {
        panic!("storm needs --ws")
    };
    let (count, k) = (
        args.num("count", 2000) as usize,
        args.num("concurrency", 32) as usize,
    );
    let cpu0 = server.cpu_us();
    let t0 = Instant::now();
    let cycle = |url: String| async move {
        let mut ws = connect_ws(&url).await?;
        ws.close(None).await.map_err(|e| e.to_string())?;
        // Wait for the server's close and the end of the stream.
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<(), String>(())
    };
    let mut done = 0u64;
    let mut errors = 0u64;
    let mut pending = futures_util::stream::iter((0..count).map(|_| cycle(url.clone())))
        .buffer_unordered(k.max(1));
    while let Some(r) = pending.next().await {
        match r {
            Ok(()) => done += 1,
            Err(_) => errors += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, server.cpu_us()) {
        (Some(a), Some(b)) if done > 0 => Some((b - a) / done as f64),
        _ => None,
    };
    println!(
        "{{\"mode\":\"storm\",\"label\":\"{}\",\"count\":{count},\"concurrency\":{k},\"seconds\":{secs:.3},\"handshakes\":{done},\"handshakes_per_s\":{:.1},\"errors\":{errors},\"server_cpu_us_per_handshake\":{}}}",
        args.str("label").unwrap_or(""),
        done as f64 / secs,
        json_num(cpu),
    );
}

/// Counts the binary frames of `size` bytes arriving on `socket` into `delivered`, waking
/// the publisher when some came.
async fn count_frames(
    mut socket: TcpStream,
    size: usize,
    delivered: Rc<Cell<u64>>,
    progress: Rc<tokio::sync::Notify>,
) {
    let mut buf = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some((len, ours)) = server_frame(&buf[at..], size) {
            if ours {
                delivered.set(delivered.get() + 1);
            }
            at += len;
        }
        buf.drain(..at);
        progress.notify_one();
    }
}

async fn fanout(args: &Args, target: Target, server: ServerProc) {
    let n = args.num("subscribers", 1000) as usize;
    let size = args.num("size", 64) as usize;
    let window = args.num("window", 4);
    let secs = args.num("seconds", 3);
    let (mut conns, errors) = connect_many(&target, n + 1, 64).await;
    let raw = |c: Conn| match c {
        Conn::Ws(ws) => match ws.into_inner() {
            MaybeTlsStream::Plain(s) => s,
            _ => panic!("fanout runs on plain ws://"),
        },
        Conn::Tcp(s) => s,
    };
    let mut publisher = raw(conns.pop().expect("a publisher connection"));
    let subscribers = conns.len() as u64;
    let delivered = Rc::new(Cell::new(0u64));
    let progress = Rc::new(tokio::sync::Notify::new());
    let local = tokio::task::LocalSet::new();
    for c in conns {
        local.spawn_local(count_frames(
            raw(c),
            size,
            Rc::clone(&delivered),
            Rc::clone(&progress),
        ));
    }
    let frame = client_frame(size);
    let (cpu0, me0) = (server.cpu_us(), ServerProc::me().cpu_us());
    let t0 = Instant::now();
    let (sent, done) = local
        .run_until(async {
            let mut sent = 0u64;
            let end = t0 + Duration::from_secs(secs);
            while Instant::now() < end {
                if sent * subscribers < delivered.get() + window * subscribers {
                    if publisher.write_all(&frame).await.is_err() {
                        break;
                    }
                    sent += 1;
                } else {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(10), progress.notified()).await;
                }
            }
            // the last messages' deliveries, for at most 5 s
            let drain = Instant::now() + Duration::from_secs(5);
            while delivered.get() < sent * subscribers && Instant::now() < drain {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, delivered.get())
        })
        .await;
    let secs = t0.elapsed().as_secs_f64();
    let per = |cpu: Option<f64>, base: Option<f64>| match (cpu, base) {
        (Some(b), Some(a)) if done > 0 => Some((b - a) / done as f64),
        _ => None,
    };
    println!(
        "{{\"mode\":\"fanout\",\"label\":\"{}\",\"subscribers\":{subscribers},\"size\":{size},\"window\":{window},\"seconds\":{secs:.3},\"published\":{sent},\"deliveries\":{done},\"missing\":{},\"deliveries_per_s\":{:.1},\"errors\":{errors},\"server_cpu_us_per_delivery\":{},\"loadgen_cpu_us_per_delivery\":{}}}",
        args.str("label").unwrap_or(""),
        (sent * subscribers).saturating_sub(done),
        done as f64 / secs,
        json_num(per(server.cpu_us(), cpu0)),
        json_num(per(ServerProc::me().cpu_us(), me0)),
    );
}

async fn idle(args: &Args, target: Target, server: ServerProc) {
    let count = args.num("count", 10000) as usize;
    let rss0 = server.rss_kib();
    let (open, errors) = connect_many(&target, count, 64).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = server.rss_kib();
    let per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if !open.is_empty() => Some((b - a) / open.len() as f64),
        _ => None,
    };
    println!(
        "{{\"mode\":\"idle\",\"label\":\"{}\",\"count\":{count},\"open\":{},\"errors\":{errors},\"server_rss_kib_before\":{},\"server_rss_kib_after\":{},\"server_kib_per_conn\":{}}}",
        args.str("label").unwrap_or(""),
        open.len(),
        json_num(rss0),
        json_num(rss1),
        json_num(per_conn),
    );
    drop(open);
}

/// What one held connection saw.
#[derive(Default)]
struct Held {
    pings: Cell<u64>,
    deliveries: Cell<u64>,
    /// Wall-clock time of its first delivery (Unix seconds).
    first_delivery: Cell<Option<f64>>,
    closed: Cell<bool>,
}

async fn hold(args: &Args, target: Target) {
    let count = args.num("count", 10000) as usize;
    let seconds = args.num("seconds", 60);
    // Each connection is read from the moment it opens (a connection waiting for the
    // others to open would not answer the server's pings); `seconds` counts from the
    // moment the last one has opened.
    let gate = Rc::new(tokio::sync::Semaphore::new(args.num("concurrency", 64) as usize));
    let (opened, errors) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(0u64)));
    let until: Rc<Cell<Option<Instant>>> = Rc::default();
    let held: Vec<Rc<Held>> = (0..count).map(|_| Rc::default()).collect();
    let label = args.str("label").unwrap_or("").to_owned();
    let local = tokio::task::LocalSet::new();
    for h in &held {
        let (h, gate, target) = (Rc::clone(h), Rc::clone(&gate), target.clone());
        let (opened, errors, until, label) =
            (Rc::clone(&opened), Rc::clone(&errors), Rc::clone(&until), label.clone());
        local.spawn_local(async move {
            let permit = gate.acquire().await;
            let conn = connect(&target).await;
            drop(permit);
            match &conn {
                Ok(_) => opened.set(opened.get() + 1),
                Err(_) => errors.set(errors.get() + 1),
            }
            if opened.get() + errors.get() as usize == count {
                until.set(Some(Instant::now() + Duration::from_secs(seconds)));
                println!(
                    "{{\"mode\":\"hold\",\"event\":\"open\",\"label\":\"{label}\",\"open\":{},\"errors\":{}}}",
                    opened.get(),
                    errors.get()
                );
            }
            let Ok(Conn::Ws(mut ws)) = conn else {
                h.closed.set(true);
                return;
            };
            loop {
                let deadline = until.get().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
                match next {
                    Err(_) if until.get().is_some_and(|t| Instant::now() >= t) => break,
                    Err(_) => {}
                    Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))) => {
                        h.pings.set(h.pings.get() + 1)
                    }
                    Ok(Some(Ok(m))) if m.is_binary() || m.is_text() => {
                        h.deliveries.set(h.deliveries.get() + 1);
                        if h.first_delivery.get().is_none() {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0.0, |d| d.as_secs_f64());
                            h.first_delivery.set(Some(now));
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) => {
                        h.closed.set(true);
                        break;
                    }
                }
            }
        });
    }
    local.await;
    let sum = |f: &dyn Fn(&Held) -> u64| held.iter().map(|h| f(h)).sum::<u64>();
    let last = held
        .iter()
        .filter_map(|h| h.first_delivery.get())
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    println!(
        "{{\"mode\":\"hold\",\"event\":\"done\",\"label\":\"{}\",\"held\":{},\"pinged\":{},\"pings\":{},\"still_open\":{},\"delivered_to\":{},\"deliveries\":{},\"last_first_delivery\":{}}}",
        args.str("label").unwrap_or(""),
        held.len(),
        sum(&|h| u64::from(h.pings.get() > 0)),
        sum(&|h| h.pings.get()),
        sum(&|h| u64::from(!h.closed.get())),
        sum(&|h| u64::from(h.deliveries.get() > 0)),
        sum(&|h| h.deliveries.get()),
        last.map_or("null".into(), |t| format!("{t:.6}")),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        eprintln!("usage: loadgen echo|storm|idle|fanout --ws URL|--tcp HOST:PORT [options]");
        std::process::exit(2);
    };
    let args = Args::parse(rest);
    if let Some(list) = args.str("sources") {
        let ips = list
            .split(',')
            .map(|a| a.parse().expect("--sources: IP addresses, comma-separated"))
            .collect();
        SOURCES.with(|s| *s.borrow_mut() = (ips, 0));
    }
    let target = Target::from(&args);
    let server = ServerProc(
        args.str("pid")
            .map(|p| p.parse().expect("--pid must be a number")),
    );
    match mode.as_str() {
        "echo" => echo(&args, target, server).await,
        "storm" => storm(&args, target, server).await,
        "idle" => idle(&args, target, server).await,
        "hold" => hold(&args, target).await,
        "fanout" => fanout(&args, target, server).await,
        other => panic!("unknown mode {other}"),
    }
}
