//! handshake: the opening HTTP exchange of RFC 6455 §4, as pure functions.
//!
//! Parsing an Upgrade request head, judging it with the exact messages of the original
//! evluaserver module, computing `Sec-WebSocket-Accept`, and the JSON error body the
//! original sends with a rejection. Writing the response belongs to `http`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID every accept key is derived from (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The only protocol version spoken (RFC 6455 §4.1).
pub const WEBSOCKET_VERSION: &str = "13";

pub const MISSING_VERSION: &str = "Missing Sec-WebSocket-Version in handshake request";
pub const UNSUPPORTED_VERSION: &str = "Unsupported WebSocket version requested";
pub const MISSING_KEY: &str = "Missing Sec-WebSocket-Key in handshake request";
pub const MALFORMED_KEY: &str =
    "Malformed Sec-WebSocket-Key in handshake request: must be 16 bytes in base64";
pub const MISSING_CONNECTION_UPGRADE: &str =
    "Missing Connection: Upgrade header in handshake request";
pub const NOT_GET: &str = "WebSocket handshake request must use the GET method";
pub const MISSING_HOST: &str = "Missing Host header in handshake request";
pub const NOT_HTTP_1_1: &str = "WebSocket handshake request must use HTTP/1.1 or later";

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The target in origin form (`/chat?room=1`): an absolute-form target
    /// (`http://host:port/chat`, RFC 9112 §3.2.2) is reduced to its path and query.
    pub uri: String,
    /// The minor version of HTTP/1.x (0 or 1).
    pub http_minor: u8,
    /// Header names and values in the order received; names as the client spelled them.
    pub headers: Vec<(String, String)>,
}

/// The value of header `name` (any case) in `headers`. Repeated headers are joined with
/// ", " (RFC 9110 §5.3).
pub fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |acc, v| acc + ", " + v))
}

/// Whether the comma-separated header `name` contains `token` (any case).
pub fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        has_token(&self.headers, name, token)
    }

    /// Whether this request asks to switch to WebSocket at all (`Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.has_token("Upgrade", "websocket")
    }
}

/// A parsed response head (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

pub const NO_CONNECTION_UPGRADE: &str = "No Connection: Upgrade header in handshake response";
pub const NO_UPGRADE_WEBSOCKET: &str = "No Upgrade: websocket header in handshake response";
pub const BAD_ACCEPT: &str = "Invalid or missing Sec-WebSocket-Accept header in handshake response";

/// Parses the response head at the start of `buf`, like [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    max_headers: usize,
    max_head_bytes: usize,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut storage);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head_bytes => {
            let headers = owned_headers(res.headers);
            let head = ResponseHead {
                status: res.code.unwrap_or(0),
                reason: res.reason.unwrap_or_default().to_owned(),
                headers,
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= max_head_bytes => Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// The message of a client whose Upgrade request was answered with anything but 101: the
/// server's `X-msg` (the original's way of saying why), else the status line.
pub fn refusal(head: &ResponseHead) -> String {
    header_value(&head.headers, "X-msg").unwrap_or_else(|| {
        format!("connect: server answered {} {}", head.status, head.reason)
            .trim_end()
            .to_owned()
    })
}

/// Judges a 101 answer to our Upgrade request with the original client's messages.
pub fn check_response(head: &ResponseHead, key: &str) -> Result<(), &'static str> {
    if !has_token(&head.headers, "Connection", "upgrade") {
        return Err(NO_CONNECTION_UPGRADE);
    }
    if !has_token(&head.headers, "Upgrade", "websocket") {
        return Err(NO_UPGRADE_WEBSOCKET);
    }
    match header_value(&head.headers, "Sec-WebSocket-Accept") {
        Some(accept) if accept.trim() == accept_key(key) => Ok(()),
        _ => Err(BAD_ACCEPT),
    }
}

/// A fresh client key: 16 random bytes in base64 (§4.1).
pub fn client_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// The Upgrade request a client sends: `target` is path and query; `extra` are the
/// caller's headers (already checked for CR/LF), which may override `Host`.
pub fn client_request(target: &str, host: &str, key: &str, extra: &[(String, String)]) -> String {
    let mut out = format!("GET {target} HTTP/1.1\r\n");
    if !extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("Host")) {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    out.push_str(&format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n"));
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out
}

/// Why a request head could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Larger than the configured maximum, or more headers than allowed: 431.
    TooLarge,
    /// Not HTTP/1.1 syntax: 400.
    Malformed(String),
}

/// Header names and values as owned strings, values trimmed.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect()
}

/// The path and query of a request target: an absolute-form target (`scheme://authority`
/// then the path, RFC 9112 §3.2.2) loses its scheme and authority (`/` when it has no
/// path); an origin-form one is returned as it is.
fn origin_form(target: &str) -> &str {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return target;
    }
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        _ => "/",
    }
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// On success also returns the head's length; bytes after it belong to the WebSocket.
pub fn parse_request(
    buf: &[u8],
    max_headers: usize,
    max_head_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > max_head_bytes {
                return Err(HeadError::TooLarge);
            }
            let headers = owned_headers(req.headers);
            let head = RequestHead {
                method: req.method.unwrap_or_default().to_owned(),
                uri: origin_form(req.path.unwrap_or_default()).to_owned(),
                http_minor: req.version.unwrap_or(1),
                headers,
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_head_bytes => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// A handshake the server must refuse: the message for the client and, for a version
/// mismatch, the `Sec-WebSocket-Version` header that tells it what is spoken (§4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub message: &'static str,
    pub advertise_version: bool,
}

/// Judges the WebSocket headers of an Upgrade request, in the order of the original
/// module; on success returns the client's `Sec-WebSocket-Key`.
pub fn check_upgrade(
    method: &str,
    header: impl Fn(&str) -> Option<String>,
    has_connection_upgrade: bool,
) -> Result<String, Rejection> {
    let reject = |message| {
        Err(Rejection {
            message,
            advertise_version: false,
        })
    };
    let Some(version) = header("Sec-WebSocket-Version") else {
        return reject(MISSING_VERSION);
    };
    if version.trim() != WEBSOCKET_VERSION {
        return Err(Rejection {
            message: UNSUPPORTED_VERSION,
            advertise_version: true,
        });
    }
    let key = header("Sec-WebSocket-Key")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    if key.is_empty() {
        return reject(MISSING_KEY);
    }
    if !is_valid_key(&key) {
        return reject(MALFORMED_KEY);
    }
    if !method.eq_ignore_ascii_case("GET") {
        return reject(NOT_GET);
    }
    if !has_connection_upgrade {
        return reject(MISSING_CONNECTION_UPGRADE);
    }
    // RFC 6455 §4.2.1 item 2 (and RFC 9112 §3.2: every HTTP/1.1 request has one).
    if header("Host").is_none_or(|h| h.trim().is_empty()) {
        return reject(MISSING_HOST);
    }
    Ok(key)
}

/// A key is the base64 encoding of 16 bytes (§4.1, item 7).
pub fn is_valid_key(key: &str) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// `Sec-WebSocket-Accept` for a client key: base64(sha1(key ++ GUID)) (§4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The body and `X-msg` header of an error answer: `{"error_message":"<message>"}`.
pub fn json_error(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 21);
    out.push_str("{\"error_message\":\"");
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

/// An RFC 7617 Basic credential, `Basic base64(user:password)`: the `Authorization` value
/// of `ws.connect`'s `credentials` (both runtimes) and the `Proxy-Authorization` of a proxy.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(raw: &str) -> RequestHead {
        parse_request(raw.as_bytes(), 64, 8192).unwrap().unwrap().0
    }

    fn check(h: &RequestHead) -> Result<String, Rejection> {
        check_upgrade(
            &h.method,
            |n| h.header(n),
            h.has_token("Connection", "upgrade"),
        )
    }

    #[test]
    fn accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn header_names_match_in_any_case_and_connection_is_a_token_list() {
        let h = head(&format!(
            "GET /chat HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-key: {KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
        ));
        assert!(h.is_websocket_upgrade());
        assert_eq!(check(&h), Ok(KEY.to_owned()));
    }

    #[test]
    fn rejections_carry_the_original_messages_in_the_original_order() {
        let h = head("GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert_eq!(check(&h).unwrap_err().message, MISSING_VERSION);
        let h = head(&format!(
            "GET /x HTTP/1.1\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        ));
        assert_eq!(
            check(&h).unwrap_err(),
            Rejection {
                message: UNSUPPORTED_VERSION,
                advertise_version: true
            }
        );
        let h =
            head("GET /x HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key:  \r\n\r\n");
        assert_eq!(check(&h).unwrap_err().message, MISSING_KEY);
        let h = head(
            "GET /x HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
        );
        assert_eq!(check(&h).unwrap_err().message, MALFORMED_KEY);
        let h = head(&format!("POST /x HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"));
        assert_eq!(check(&h).unwrap_err().message, NOT_GET);
        let h = head(&format!("GET /x HTTP/1.1\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"));
        assert_eq!(check(&h).unwrap_err().message, MISSING_CONNECTION_UPGRADE);
        let h = head(&format!("GET /x HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"));
        assert_eq!(check(&h).unwrap_err().message, MISSING_HOST);
    }

    #[test]
    fn an_absolute_form_target_is_reduced_to_its_path_and_query() {
        for (raw, uri) in [
            ("GET http://127.0.0.1:8080/echo?x=1 HTTP/1.1", "/echo?x=1"),
            ("GET ws://example.com/a/b HTTP/1.1", "/a/b"),
            ("GET HTTPS://example.com HTTP/1.1", "/"),
            ("GET /plain?u=http://x/y HTTP/1.1", "/plain?u=http://x/y"),
        ] {
            assert_eq!(head(&format!("{raw}\r\nHost: x\r\n\r\n")).uri, uri, "{raw}");
        }
    }

    #[test]
    fn the_http_minor_version_is_kept() {
        assert_eq!(head("GET / HTTP/1.0\r\n\r\n").http_minor, 0);
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n").http_minor, 1);
    }

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(is_valid_key(KEY));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAAA==x"));
        assert!(!is_valid_key("!!!!!!!!!!!!!!!!!!!!!!=="));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAAAAA")); // 18 bytes
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_heads_are_refused() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", 64, 8192),
            Ok(None)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(
            parse_request(big.as_bytes(), 64, 8192),
            Err(HeadError::TooLarge)
        );
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), 64, 8192),
            Err(HeadError::TooLarge)
        );
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 64, 8192),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn the_head_length_leaves_pipelined_frame_bytes_alone() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x81\x80abcd";
        let (_, len) = parse_request(raw, 64, 8192).unwrap().unwrap();
        assert_eq!(&raw[len..], b"\x81\x80abcd");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let h = head("GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(h.header("X-A").as_deref(), Some("1, 2"));
        assert_eq!(h.header("missing"), None);
    }

    fn response(raw: &str) -> ResponseHead {
        parse_response(raw.as_bytes(), 64, 8192).unwrap().unwrap().0
    }

    #[test]
    fn a_101_is_judged_with_the_original_client_messages() {
        let ok = response("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        assert_eq!(check_response(&ok, KEY), Ok(()));
        let no_conn = response("HTTP/1.1 101 X\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        assert_eq!(check_response(&no_conn, KEY), Err(NO_CONNECTION_UPGRADE));
        let no_upgrade = response("HTTP/1.1 101 X\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        assert_eq!(check_response(&no_upgrade, KEY), Err(NO_UPGRADE_WEBSOCKET));
        let no_accept =
            response("HTTP/1.1 101 X\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(check_response(&no_accept, KEY), Err(BAD_ACCEPT));
        let wrong = response("HTTP/1.1 101 X\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAA\r\n\r\n");
        assert_eq!(check_response(&wrong, KEY), Err(BAD_ACCEPT));
    }

    #[test]
    fn the_client_request_carries_path_query_key_and_extra_headers() {
        let req = client_request(
            "/chat?room=1",
            "example.com:8080",
            KEY,
            &[("X-Token".into(), "abc".into())],
        );
        assert!(req.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
        assert!(req.contains(
            "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        ));
        assert!(req.ends_with("X-Token: abc\r\n\r\n"));
        let (head, _) = parse_request(req.as_bytes(), 64, 8192).unwrap().unwrap();
        assert_eq!(head.header("connection").as_deref(), Some("Upgrade"));
        assert!(is_valid_key(&client_key([1; 16])));
    }

    #[test]
    fn json_errors_escape_what_json_requires() {
        assert_eq!(
            json_error("Path empty: x"),
            r#"{"error_message":"Path empty: x"}"#
        );
        assert_eq!(
            json_error("a\"b\\c\nd\u{1}"),
            r#"{"error_message":"a\"b\\c\nd\u0001"}"#
        );
    }

    #[test]
    fn a_refused_upgrade_says_the_servers_x_msg_else_its_status_line() {
        let head = |status, reason: &str, headers: Vec<(String, String)>| ResponseHead {
            status,
            reason: reason.into(),
            headers,
        };
        let why = vec![("x-msg".to_owned(), "no such room".to_owned())];
        assert_eq!(refusal(&head(400, "Bad Request", why)), "no such room");
        assert_eq!(
            refusal(&head(404, "Not Found", vec![])),
            "connect: server answered 404 Not Found"
        );
        assert_eq!(
            refusal(&head(404, "", vec![])),
            "connect: server answered 404"
        );
    }
}
