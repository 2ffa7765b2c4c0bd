//! proxy: `ws.connect` through an HTTP proxy (CONNECT, Basic auth) or a SOCKS5 proxy (with
//! user/password auth; `socks5h` lets the proxy resolve the name). Which proxy comes from
//! the `proxy` input or, by default, from the environment (`wss_proxy` / `ws_proxy`, then
//! `https_proxy` / `http_proxy`, then `all_proxy`, each also in capitals), with `no_proxy`
//! honoured. The proxy URL and the environment rules and the bytes of both protocols are
//! pure functions here; [`tunnel`] does the I/O. TLS to a `wss://` target runs through the
//! tunnel end to end, with the target's name.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy to reach targets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    /// User and password.
    pub auth: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5; `remote_dns`: the proxy resolves the target's name (`socks5h://`).
    Socks5 { remote_dns: bool },
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `http://[user:pass@]host[:port]` (port 80 by default; `https://` proxies are not
/// spoken), `socks5://` or `socks5h://` (port 1080).
pub fn parse(url: &str) -> Result<Proxy, String> {
    let bad = |why: &str| format!("proxy '{url}' {why}");
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("is not a URL (http://, socks5:// or socks5h://)"))?;
    let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" => (Kind::Http, 80),
        "socks5" => (Kind::Socks5 { remote_dns: false }, 1080),
        "socks5h" => (Kind::Socks5 { remote_dns: true }, 1080),
        other => {
            return Err(bad(&format!(
                "has scheme '{other}': http, socks5 or socks5h are spoken"
            )))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((percent_decode(user), percent_decode(pass))), hostport)
        }
        None => (None, authority),
    };
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            (h, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad(&format!("has a bad port '{p}'")))?,
        None => default_port,
    };
    Ok(Proxy {
        kind,
        host: host.to_owned(),
        port,
        auth,
    })
}

/// Whether `no_proxy` (comma-separated: `*`, host names matching themselves and their
/// subdomains, `.domain`, IP addresses, each optionally `:port`) exempts `host:port`.
pub fn exempt(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') => (n, p.parse::<u16>().ok()),
                _ => (entry, None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name
                .trim_start_matches('.')
                .trim_start_matches("*.")
                .to_ascii_lowercase();
            host == name || host.ends_with(&format!(".{name}"))
        })
}

/// The proxy the environment names for a `ws://` (`secure` false) or `wss://` target, unless
/// `no_proxy` exempts it. `env` reads a variable.
pub fn from_env(
    secure: bool,
    host: &str,
    port: u16,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Result<Proxy, String>> {
    let var = |name: &str| {
        env(name)
            .or_else(|| env(&name.to_ascii_uppercase()))
            .filter(|v| !v.trim().is_empty())
    };
    if var("no_proxy").is_some_and(|n| exempt(&n, host, port)) {
        return None;
    }
    let names: &[&str] = if secure {
        &["wss_proxy", "https_proxy", "all_proxy"]
    } else {
        &["ws_proxy", "http_proxy", "all_proxy"]
    };
    names
        .iter()
        .find_map(|n| var(n))
        .map(|url| parse(url.trim()))
}

/// The HTTP CONNECT request for `host:port`.
pub fn connect_request(host: &str, port: u16, auth: Option<&(String, String)>) -> String {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = auth {
        let credential = ws_proto::handshake::basic_authorization(user, pass);
        req.push_str(&format!("Proxy-Authorization: {credential}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// RFC 1928's reply codes, as words.
fn socks_reply(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// The SOCKS5 CONNECT request for `host:port` (a name, or an address `ip`).
pub fn socks_connect_request(host: &str, ip: Option<std::net::IpAddr>, port: u16) -> Vec<u8> {
    let mut req = vec![5, 1, 0];
    match ip {
        Some(std::net::IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Some(std::net::IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        None => {
            req.push(3);
            req.push(host.len().min(255) as u8);
            req.extend_from_slice(&host.as_bytes()[..host.len().min(255)]);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    req
}

/// Why a tunnel could not be made: the message names the hop; `kind` as `ws.connect`'s.
pub struct TunnelError {
    pub kind: &'static str,
    pub message: String,
}

fn err(kind: &'static str, message: String) -> TunnelError {
    TunnelError { kind, message }
}

/// Connects to `proxy` and has it open a tunnel to `host:port`; the stream is the tunnel.
pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, TunnelError> {
    let mut s = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "refused"
            } else {
                "proxy"
            };
            err(
                kind,
                format!("connect: cannot connect to proxy {proxy}: {e}"),
            )
        })?;
    let _ = s.set_nodelay(true);
    match proxy.kind {
        Kind::Http => http_connect(&mut s, proxy, host, port).await?,
        Kind::Socks5 { remote_dns } => {
            socks_authenticate(&mut s, proxy).await?;
            socks_connect(&mut s, proxy, host, port, remote_dns).await?;
        }
    }
    Ok(s)
}

/// An I/O error on the way to `proxy`.
fn io_error(proxy: &Proxy) -> impl Fn(std::io::Error) -> TunnelError + Copy + '_ {
    move |e| err("proxy", format!("connect: proxy {proxy}: {e}"))
}

/// HTTP CONNECT: the request, then the answer's head (read a byte at a time: nothing of
/// the tunnel may be eaten); a status other than 2xx is a refusal.
async fn http_connect(
    s: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), TunnelError> {
    let io = io_error(proxy);
    s.write_all(connect_request(host, port, proxy.auth.as_ref()).as_bytes())
        .await
        .map_err(io)?;
    // Read the answer's head a byte at a time: nothing of the tunnel may be eaten.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err(err(
                "proxy",
                format!("connect: proxy {proxy} sent an endless answer to CONNECT"),
            ));
        }
        let mut b = [0u8; 1];
        if s.read(&mut b).await.map_err(io)? == 0 {
            return Err(err(
                "proxy",
                format!("connect: proxy {proxy} closed the connection during CONNECT"),
            ));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (_, code, reason) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if !code.starts_with('2') {
        return Err(err(
            "proxy",
            format!("connect: proxy {proxy} refused CONNECT: {code} {reason}")
                .trim_end()
                .to_owned(),
        ));
    }
    Ok(())
}

/// SOCKS5's greeting: the methods we offer (none, or user/password when the proxy URL has
/// them) and, if chosen, the user/password exchange (RFC 1929).
async fn socks_authenticate(s: &mut TcpStream, proxy: &Proxy) -> Result<(), TunnelError> {
    let io = io_error(proxy);
    let methods: &[u8] = if proxy.auth.is_some() { &[0, 2] } else { &[0] };
    let mut hello = vec![5, methods.len() as u8];
    hello.extend_from_slice(methods);
    s.write_all(&hello).await.map_err(io)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io)?;
    match (choice, &proxy.auth) {
        ([5, 0], _) => {}
        ([5, 2], Some((user, pass))) => {
            let mut a = vec![1, user.len().min(255) as u8];
            a.extend_from_slice(&user.as_bytes()[..user.len().min(255)]);
            a.push(pass.len().min(255) as u8);
            a.extend_from_slice(&pass.as_bytes()[..pass.len().min(255)]);
            s.write_all(&a).await.map_err(io)?;
            let mut r = [0u8; 2];
            s.read_exact(&mut r).await.map_err(io)?;
            if r[1] != 0 {
                return Err(err(
                    "proxy",
                    format!("connect: SOCKS5 proxy {proxy} refused the user name and password"),
                ));
            }
        }
        ([5, 0xff], _) | ([5, 2], None) => {
            return Err(err(
                "proxy",
                format!(
                    "connect: SOCKS5 proxy {proxy} accepts none of our authentication methods{}",
                    if proxy.auth.is_some() {
                        ""
                    } else {
                        " (it may want a user name and password)"
                    }
                ),
            ))
        }
        _ => {
            return Err(err(
                "proxy",
                format!("connect: {proxy} is not a SOCKS5 proxy"),
            ))
        }
    }
    Ok(())
}

/// SOCKS5's CONNECT to `host:port` (resolved here unless `remote_dns`), and its reply.
async fn socks_connect(
    s: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    remote_dns: bool,
) -> Result<(), TunnelError> {
    let io = io_error(proxy);
    let ip = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if remote_dns => None,
        Err(_) => Some(
            tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| err("dns", format!("connect: cannot resolve host '{host}'")))?,
        ),
    };
    s.write_all(&socks_connect_request(host, ip, port))
        .await
        .map_err(io)?;
    let mut r = [0u8; 4];
    s.read_exact(&mut r).await.map_err(io)?;
    if r[1] != 0 {
        return Err(err(
            "proxy",
            format!(
                "connect: SOCKS5 proxy {proxy} refused CONNECT to {host}:{port}: {}",
                socks_reply(r[1])
            ),
        ));
    }
    let rest = match r[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await.map_err(io)?;
            n[0] as usize + 2
        }
        _ => {
            return Err(err(
                "proxy",
                format!("connect: SOCKS5 proxy {proxy} sent a bad reply"),
            ))
        }
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await.map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_read_with_their_defaults_and_credentials() {
        assert_eq!(
            parse("http://user:p%40ss@127.0.0.1:3128/").unwrap(),
            Proxy {
                kind: Kind::Http,
                host: "127.0.0.1".into(),
                port: 3128,
                auth: Some(("user".into(), "p@ss".into()))
            }
        );
        assert_eq!(parse("socks5h://proxy.example").unwrap().port, 1080);
        assert_eq!(
            parse("socks5h://proxy.example").unwrap().kind,
            Kind::Socks5 { remote_dns: true }
        );
        assert_eq!(parse("http://[::1]:8080").unwrap().host, "::1");
        assert!(parse("https://p:1")
            .unwrap_err()
            .contains("http, socks5 or socks5h"));
        assert!(parse("127.0.0.1:3128")
            .unwrap_err()
            .contains("is not a URL"));
        assert!(parse("http://p:99999").unwrap_err().contains("bad port"));
    }

    #[test]
    fn no_proxy_exempts_names_domains_addresses_ports_and_star() {
        assert!(exempt(
            "localhost, .internal.example",
            "api.internal.example",
            80
        ));
        assert!(exempt("example.com", "sub.example.com", 443));
        assert!(!exempt("example.com", "badexample.com", 443));
        assert!(exempt("127.0.0.1:8080", "127.0.0.1", 8080));
        assert!(!exempt("127.0.0.1:8080", "127.0.0.1", 9090));
        assert!(exempt("*", "anything", 1));
        assert!(!exempt("", "anything", 1));
    }

    #[test]
    fn the_environment_is_read_by_scheme_then_all_proxy_and_no_proxy_wins() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = env(&[
            ("ws_proxy", "http://ws:1"),
            ("HTTPS_PROXY", "http://https:2"),
            ("all_proxy", "socks5://all:3"),
        ]);
        assert_eq!(from_env(false, "h", 80, e).unwrap().unwrap().host, "ws");
        assert_eq!(from_env(true, "h", 443, e).unwrap().unwrap().host, "https");
        let e = env(&[("all_proxy", "socks5://all:3"), ("NO_PROXY", "h")]);
        assert!(from_env(true, "h", 443, e).is_none());
        assert_eq!(from_env(true, "other", 443, e).unwrap().unwrap().port, 3);
        assert!(from_env(true, "h", 443, env(&[])).is_none());
    }

    #[test]
    fn connect_requests_carry_the_target_and_basic_auth() {
        assert_eq!(
            connect_request("example.com", 443, Some(&("u".into(), "p".into()))),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(
            socks_connect_request("h", None, 80),
            vec![5, 1, 0, 3, 1, b'h', 0, 80]
        );
        assert_eq!(
            socks_connect_request("x", Some("127.0.0.1".parse().unwrap()), 443),
            vec![5, 1, 0, 1, 127, 0, 0, 1, 1, 187]
        );
    }
}
