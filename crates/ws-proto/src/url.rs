//! url: `ws://`, `wss://`, `http://` and `https://` URLs as `ws.connect` takes them — pure,
//! shared by both runtimes' clients.

/// A parsed `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub target: String,
}

/// Parses a WebSocket URL: default ports 80/443, target `/` when there is no path.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("connect: url '{url}' has no scheme (ws://, wss://, http://, https://)")
    })?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => {
            return Err(format!(
                "connect: url scheme '{other}' is not ws, wss, http or https"
            ))
        }
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let target = target.split('#').next().unwrap_or("/").to_owned();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if secure { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("connect: url '{url}' has an unclosed IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("connect: url '{url}' has an invalid port"))?,
            None => default_port,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| format!("connect: url '{url}' has an invalid port '{p}'"))?,
            ),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("connect: url '{url}' has no host"));
    }
    Ok(Url {
        secure,
        host,
        port,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_scheme_parse_with_default_ports_and_the_query_kept() {
        assert_eq!(
            parse_url("ws://h/a?b=1").unwrap(),
            Url {
                secure: false,
                host: "h".into(),
                port: 80,
                target: "/a?b=1".into()
            }
        );
        assert_eq!(
            parse_url("wss://h").unwrap(),
            Url {
                secure: true,
                host: "h".into(),
                port: 443,
                target: "/".into()
            }
        );
        assert_eq!(
            parse_url("http://h:81?x").unwrap(),
            Url {
                secure: false,
                host: "h".into(),
                port: 81,
                target: "/?x".into()
            }
        );
        assert_eq!(
            parse_url("https://[::1]:9/p#frag").unwrap(),
            Url {
                secure: true,
                host: "::1".into(),
                port: 9,
                target: "/p".into()
            }
        );
        assert!(parse_url("ftp://h").is_err());
        assert!(parse_url("h:80").is_err());
        assert!(parse_url("ws://h:x").is_err());
        assert!(parse_url("ws://:80/").is_err());
    }
}
