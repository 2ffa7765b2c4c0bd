//! deflate: permessage-deflate (RFC 7692). The negotiation as pure functions over header
//! values — the server's choice among a client's offers and its answer, the client's offer
//! and its check of the answer — and the per-connection compressor and inflater, each
//! created on its first message. Inflation is capped while it runs: output is produced
//! in chunks and stops the moment it would pass the message limit, so a small frame
//! cannot make us allocate or work for more than `max_message_size` bytes.

use crate::zlib::{Status, Stream};

/// The extension token (RFC 7692 §7).
pub const EXTENSION: &str = "permessage-deflate";
/// What a sync flush ends with; removed from each compressed message and put back before
/// inflating it (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// zlib cannot compress with a 256-byte window (8 bits): an end held to 8 sends
/// uncompressed, which is always allowed (§6), and inflates with 9, which reads 8.
const ZLIB_MIN_WINDOW: u8 = 9;
const MAX_WINDOW: u8 = 15;
/// Inflation works through this much output at a time.
const INFLATE_CHUNK: usize = 16 << 10;
/// The compressor's output buffer is kept between messages up to this size.
const KEPT_OUTPUT: usize = 64 << 10;

/// What one end wants: the `compression` option (RFC parameter names; `server_*` is what
/// the server compresses with, `client_*` what the client does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// LZ77 window (8..15) of the server's compressor. 12 (4 KiB) keeps a compressing
    /// connection small: zlib's state is about 2^(w+2) + 2^(mem_level+9) bytes.
    pub server_max_window_bits: u8,
    /// LZ77 window (8..15) of the client's compressor.
    pub client_max_window_bits: u8,
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// zlib memLevel (1..9) of this end's compressor.
    pub mem_level: u8,
    /// zlib level (0..9) of this end's compressor.
    pub level: u8,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// Frees the compressor and the inflater after each message instead of resetting
    /// them (both ends then reset: both `*_no_context_takeover` are agreed): an idle
    /// connection keeps no zlib state, for a zlib init per message and a worse ratio.
    pub release_when_idle: bool,
}

impl Config {
    /// A client's defaults: like a server's, but the server's window is not asked to
    /// shrink (offering `server_max_window_bits` makes servers that cannot shrink it
    /// decline compression altogether).
    pub fn client_default() -> Self {
        Config {
            server_max_window_bits: MAX_WINDOW,
            ..Config::default()
        }
    }
}

impl Default for Config {
    /// A server's defaults.
    fn default() -> Self {
        Config {
            server_max_window_bits: 12,
            client_max_window_bits: 12,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            mem_level: 5,
            level: 6,
            threshold: 1024,
            release_when_idle: false,
        }
    }
}

/// What was agreed for one connection, from this end's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// Window bits of our compressor; `None`: held to 8 bits, so nothing is compressed.
    pub compress_window: Option<u8>,
    /// Our compressor starts afresh for every message.
    pub compress_reset: bool,
    /// Window bits our inflater needs (the peer's window, at least 9).
    pub inflate_window: u8,
    /// The peer starts afresh for every message: our inflater may too.
    pub inflate_reset: bool,
    pub mem_level: u8,
    pub level: u8,
    pub threshold: usize,
    /// Free the zlib state after each message where it would be reset.
    pub release: bool,
}

/// One extension of a header value: its name and `name[=value]` parameters, as sent.
type Extension = (String, Vec<(String, Option<String>)>);

/// Splits a `Sec-WebSocket-Extensions` value into extensions (RFC 6455 §9.1; quoted
/// values unquoted); `None` for each one that does not follow the grammar.
fn parse_extensions(header: &str) -> Vec<Option<Extension>> {
    split_outside_quotes(header, ',')
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .map(parse_extension)
        .collect()
}

fn parse_extension(item: &str) -> Option<Extension> {
    let mut parts = split_outside_quotes(item, ';').into_iter();
    let name = parts.next()?.trim();
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for p in parts {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        if !is_token(key) {
            return None;
        }
        params.push((key.to_ascii_lowercase(), value));
    }
    Some((name.to_ascii_lowercase(), params))
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    is_token(inner).then(|| inner.to_owned())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The parameters of one permessage-deflate offer or answer, each at most once.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads the parameters of a permessage-deflate extension; an error names what is wrong
/// (an unknown or repeated parameter, a value where none belongs, bits out of 8..15).
fn read_params(params: &[(String, Option<String>)]) -> Result<Params, String> {
    let mut p = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        if seen.contains(&key.as_str()) {
            return Err(format!("{key} given twice"));
        }
        seen.push(key);
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => p.server_max_window_bits = Some(bits(key, v)?),
            ("client_max_window_bits", v) => {
                p.client_max_window_bits = Some(v.as_deref().map(|v| bits(key, v)).transpose()?)
            }
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                return Err(format!("{key} takes no value"))
            }
            ("server_max_window_bits", None) => return Err(format!("{key} needs a value")),
            _ => return Err(format!("unknown parameter {key}")),
        }
    }
    Ok(p)
}

/// A window size in bits: 8..15, digits only, no leading zero (RFC 7692 §7.1.2).
fn bits(key: &str, v: &str) -> Result<u8, String> {
    match v.parse::<u8>() {
        Ok(n) if (8..=MAX_WINDOW).contains(&n) && !v.starts_with('0') && !v.starts_with('+') => {
            Ok(n)
        }
        _ => Err(format!("{key}={v} is not 8 to 15")),
    }
}

/// The server's side: the first acceptable permessage-deflate offer in `offers` (the
/// request's `Sec-WebSocket-Extensions`), the answer to send and what it agrees. Offers
/// with malformed or repeated parameters are declined, as are other extensions; `None`
/// when nothing is accepted (the connection goes on uncompressed).
pub fn negotiate(offers: &str, cfg: &Config) -> Option<(String, Agreement)> {
    parse_extensions(offers)
        .into_iter()
        .flatten()
        .filter(|(name, _)| name == EXTENSION)
        .find_map(|(_, params)| accept_offer(read_params(&params).ok()?, cfg))
}

fn accept_offer(offer: Params, cfg: &Config) -> Option<(String, Agreement)> {
    let mut answer = String::from(EXTENSION);
    let server_reset = offer.server_no_context_takeover || cfg.server_no_context_takeover;
    if server_reset {
        answer.push_str("; server_no_context_takeover");
    }
    let client_reset = offer.client_no_context_takeover || cfg.client_no_context_takeover;
    if client_reset {
        answer.push_str("; client_no_context_takeover");
    }
    let server_window = offer
        .server_max_window_bits
        .map_or(cfg.server_max_window_bits, |asked| {
            asked.min(cfg.server_max_window_bits)
        });
    if server_window < MAX_WINDOW {
        answer.push_str(&format!("; server_max_window_bits={server_window}"));
    }
    // The client's window can be limited only when it said it allows that.
    let client_window = match offer.client_max_window_bits {
        None => MAX_WINDOW,
        Some(offered) => {
            let w = offered
                .unwrap_or(MAX_WINDOW)
                .min(cfg.client_max_window_bits);
            if w < MAX_WINDOW || offered.is_some() {
                answer.push_str(&format!("; client_max_window_bits={w}"));
            }
            w
        }
    };
    let agreement = Agreement {
        compress_window: (server_window >= ZLIB_MIN_WINDOW).then_some(server_window),
        compress_reset: server_reset,
        inflate_window: client_window.max(ZLIB_MIN_WINDOW),
        inflate_reset: client_reset,
        mem_level: cfg.mem_level,
        level: cfg.level,
        threshold: cfg.threshold,
        release: cfg.release_when_idle,
    };
    Some((answer, agreement))
}

/// The client's offer: permessage-deflate, allowing the server to set our window, asking
/// for the server's window and context resets the configuration wants.
pub fn client_offer(cfg: &Config) -> String {
    let mut offer = String::from(EXTENSION);
    if cfg.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if cfg.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if cfg.server_max_window_bits < MAX_WINDOW {
        offer.push_str(&format!(
            "; server_max_window_bits={}",
            cfg.server_max_window_bits
        ));
    }
    offer.push_str("; client_max_window_bits");
    offer
}

/// The client's check of the server's `Sec-WebSocket-Extensions` answer to
/// [`client_offer`] (`cfg`; `None`: nothing was offered): `Ok(None)` when the server
/// declined, the agreement when it accepted, an error saying what the server got wrong
/// otherwise.
pub fn client_accept(
    answer: Option<&str>,
    cfg: Option<&Config>,
) -> Result<Option<Agreement>, String> {
    let Some(answer) = answer.filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    let Some(cfg) = cfg else {
        return Err(format!(
            "the server accepted an extension that was not offered: '{answer}'"
        ));
    };
    let extensions = parse_extensions(answer);
    let [extension] = extensions.as_slice() else {
        return Err(format!(
            "the server accepted extensions that were not offered: '{answer}'"
        ));
    };
    let (name, params) = extension
        .as_ref()
        .ok_or_else(|| format!("malformed Sec-WebSocket-Extensions answer '{answer}'"))?;
    if name != EXTENSION {
        return Err(format!(
            "the server accepted an extension that was not offered: '{name}'"
        ));
    }
    let p = read_params(params).map_err(|e| format!("{EXTENSION} answer: {e}"))?;
    let client_window = match p.client_max_window_bits {
        Some(None) => {
            return Err(format!(
                "{EXTENSION} answer: client_max_window_bits needs a value"
            ))
        }
        Some(Some(w)) => w.min(cfg.client_max_window_bits),
        None => cfg.client_max_window_bits,
    };
    let server_window = p.server_max_window_bits.unwrap_or(MAX_WINDOW);
    if server_window > cfg.server_max_window_bits {
        return Err(format!(
            "{EXTENSION} answer: server_max_window_bits={server_window} is more than the {} offered",
            cfg.server_max_window_bits
        ));
    }
    Ok(Some(Agreement {
        compress_window: (client_window >= ZLIB_MIN_WINDOW).then_some(client_window),
        compress_reset: p.client_no_context_takeover || cfg.client_no_context_takeover,
        inflate_window: server_window.max(ZLIB_MIN_WINDOW),
        inflate_reset: p.server_no_context_takeover,
        mem_level: cfg.mem_level,
        level: cfg.level,
        threshold: cfg.threshold,
        release: cfg.release_when_idle,
    }))
}

/// This end's compressor, made on the first message worth compressing.
pub struct Deflater {
    agreement: Agreement,
    zlib: Option<Stream>,
    /// Reused output of each compression.
    out: Vec<u8>,
}

impl Deflater {
    pub fn new(agreement: Agreement) -> Self {
        Deflater {
            agreement,
            zlib: None,
            out: Vec::new(),
        }
    }

    /// Whether a message of `len` bytes goes compressed (`wanted`: the sender did not opt out).
    pub fn applies(&self, len: usize, wanted: bool) -> bool {
        wanted && len >= self.agreement.threshold && self.agreement.compress_window.is_some()
    }

    /// Compresses one whole message; the bytes to send as its payload (RSV1 set).
    pub fn compress(&mut self, message: &[u8]) -> &[u8] {
        let a = self.agreement;
        let window = a.compress_window.expect("applies() was checked");
        let zlib = self
            .zlib
            .get_or_insert_with(|| Stream::deflate(a.level, window, a.mem_level));
        self.out.clear();
        self.out.reserve(message.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            let (used, _) = zlib
                .run(&message[consumed..], &mut self.out)
                .expect("deflating cannot meet bad data");
            consumed += used;
            // A sync flush is complete when it left output space unused.
            if consumed == message.len() && self.out.len() < self.out.capacity() {
                break;
            }
            self.out.reserve(self.out.capacity().max(64));
        }
        if self.out.ends_with(&TAIL) {
            self.out.truncate(self.out.len() - TAIL.len());
        }
        if a.compress_reset && a.release {
            self.zlib = None;
        } else if a.compress_reset {
            zlib.reset();
        }
        &self.out
    }

    /// Frees the output buffer if the last message made it large (or at all, with
    /// `release_when_idle`): an idle connection keeps no more than this of a big message
    /// it once sent.
    pub fn trim(&mut self) {
        if self.out.capacity() > KEPT_OUTPUT || (self.agreement.release && self.zlib.is_none()) {
            self.out = Vec::new();
        }
    }

    /// Whether the compressor has been made (for memory accounting and tests).
    pub fn is_allocated(&self) -> bool {
        self.zlib.is_some()
    }
}

/// Why an inflation stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The message would pass the limit.
    TooBig,
    /// Not a valid deflate stream.
    Corrupt,
}

/// This end's inflater, made on the first compressed message.
pub struct Inflater {
    agreement: Agreement,
    zlib: Option<Stream>,
}

impl Inflater {
    pub fn new(agreement: Agreement) -> Self {
        Inflater {
            agreement,
            zlib: None,
        }
    }

    /// Inflates the payload of one frame of a compressed message onto `out`; `last`: the
    /// message's final frame (its tail is put back and the context reset if agreed).
    /// Fails once `out` would grow past `limit` bytes, before it does.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let window = self.agreement.inflate_window;
        let zlib = self.zlib.get_or_insert_with(|| Stream::inflate(window));
        let mut ended = inflate_into(zlib, input, out, limit)?;
        if last {
            if !ended {
                ended = inflate_into(zlib, &TAIL, out, limit)?;
            }
            if (ended || self.agreement.inflate_reset) && self.agreement.release {
                self.zlib = None;
            } else if ended || self.agreement.inflate_reset {
                zlib.reset();
            }
        }
        Ok(())
    }

    /// Whether the inflater has been made (for memory accounting and tests).
    pub fn is_allocated(&self) -> bool {
        self.zlib.is_some()
    }
}

/// Runs `input` through `zlib` onto `out`, a chunk at a time, never past `limit` bytes;
/// true when the stream ended (a final block).
fn inflate_into(
    zlib: &mut Stream,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, InflateError> {
    let mut consumed = 0;
    loop {
        // Room for at most one byte past the limit: producing it proves the message too big.
        let room = (limit.saturating_sub(out.len()) + 1).min(INFLATE_CHUNK);
        out.reserve_exact(room);
        let before = out.len();
        let (used, status) = zlib
            .run(&input[consumed..], out)
            .map_err(|_| InflateError::Corrupt)?;
        consumed += used;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        match status {
            Status::StreamEnd if consumed == input.len() => return Ok(true),
            Status::StreamEnd => return Err(InflateError::Corrupt),
            _ if consumed == input.len() && out.len() < out.capacity() => return Ok(false),
            Status::BufError if out.len() == before => return Ok(false),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(offers: &str) -> Option<(String, Agreement)> {
        negotiate(offers, &Config::default())
    }

    #[test]
    fn a_bare_offer_is_answered_with_our_window_and_accepted() {
        let (answer, a) = server("permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=12");
        assert_eq!(a.compress_window, Some(12));
        assert_eq!(
            a.inflate_window, 15,
            "the client did not allow limiting its window"
        );
    }

    #[test]
    fn a_browser_offer_gets_the_client_window_limited() {
        let (answer, a) = server("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        assert_eq!(a.inflate_window, 12);
    }

    #[test]
    fn the_first_acceptable_offer_wins_and_malformed_ones_are_declined() {
        let offers = "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, \
                      permessage-deflate; server_max_window_bits; , \
                      permessage-deflate; client_no_context_takeover; client_no_context_takeover, \
                      permessage-deflate; foo=1, \
                      permessage-deflate; server_no_context_takeover=yes, \
                      permessage-deflate; server_max_window_bits=\"10\"";
        let (answer, a) = server(offers).unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(a.compress_window, Some(10));
        assert!(server("permessage-deflate; server_max_window_bits=09").is_none());
        assert!(server("permessage-deflate; client_max_window_bits=7").is_none());
        assert!(server("permessage-deflate; server_max_window_bits=\"1,2\"").is_none());
        assert!(server("foo, bar").is_none());
        assert!(server("").is_none());
    }

    #[test]
    fn context_takeover_flags_are_echoed_and_agreed() {
        let (answer, a) = server(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10"
        );
        assert!(a.compress_reset && a.inflate_reset);
        assert_eq!(a.inflate_window, 10);
    }

    #[test]
    fn a_window_of_8_is_agreed_but_not_compressed_with_and_inflated_with_9() {
        let (answer, a) =
            server("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8")
                .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"
        );
        assert_eq!(a.compress_window, None);
        assert_eq!(a.inflate_window, 9);
        assert!(!Deflater::new(a).applies(1 << 20, true));
    }

    #[test]
    fn the_client_offers_and_checks_the_answer() {
        let cfg = Config::default();
        assert_eq!(
            client_offer(&cfg),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits"
        );
        assert_eq!(client_accept(None, Some(&cfg)), Ok(None));
        assert!(client_accept(Some("permessage-deflate"), None).is_err());
        let a = client_accept(
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"),
            Some(&cfg),
        )
        .unwrap()
        .unwrap();
        assert_eq!((a.compress_window, a.inflate_window), (Some(9), 10));
        for (bad, why) in [
            (
                "permessage-deflate; server_max_window_bits=13",
                "more than the 12 offered",
            ),
            ("permessage-deflate", "more than the 12 offered"),
            ("x-foo", "not offered: 'x-foo'"),
            ("permessage-deflate, permessage-deflate", "not offered"),
            (
                "permessage-deflate; client_max_window_bits",
                "needs a value",
            ),
            ("permessage-deflate; mystery", "unknown parameter mystery"),
        ] {
            let err = client_accept(Some(bad), Some(&cfg)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn release_when_idle_frees_both_zlib_states_after_each_message_and_still_round_trips() {
        let cfg = Config {
            release_when_idle: true,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Config::default()
        };
        let (answer, mut a) = negotiate("permessage-deflate; client_max_window_bits", &cfg).unwrap();
        assert!(answer.contains("server_no_context_takeover"), "{answer}");
        assert!(answer.contains("client_no_context_takeover"), "{answer}");
        assert!(a.release && a.compress_reset && a.inflate_reset);
        a.threshold = 0;
        let (mut deflater, mut inflater) = (Deflater::new(a), Inflater::new(a));
        for round in 0..3 {
            let message = format!("message {round} {}", "abc".repeat(200));
            let compressed = deflater.compress(message.as_bytes()).to_vec();
            assert!(!deflater.is_allocated(), "the compressor is freed after message {round}");
            deflater.trim();
            let mut out = Vec::new();
            inflater.inflate(&compressed, true, &mut out, 1 << 20).unwrap();
            assert_eq!(out, message.as_bytes());
            assert!(!inflater.is_allocated(), "the inflater is freed after message {round}");
        }
    }

    fn agreement(reset: bool) -> Agreement {
        let (_, mut a) = server("permessage-deflate; client_max_window_bits").unwrap();
        a.compress_window = Some(15);
        a.inflate_window = 15;
        a.compress_reset = reset;
        a.inflate_reset = reset;
        a.threshold = 0;
        a
    }

    #[test]
    fn rfc_7692_section_7_2_3_examples_inflate() {
        let mut inflater = Inflater::new(agreement(false));
        let mut out = Vec::new();
        inflater
            .inflate(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // The same message again, referring to the first through the shared window.
        out.clear();
        inflater
            .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // Fragmented: "Hel" then "lo" as two frames of one compressed message.
        let mut inflater = Inflater::new(agreement(false));
        out.clear();
        inflater
            .inflate(&[0xf2, 0x48, 0x05, 0x00], false, &mut out, 100)
            .unwrap();
        inflater
            .inflate(
                &[0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn compressed_messages_round_trip_with_and_without_context_takeover() {
        for reset in [false, true] {
            let mut deflater = Deflater::new(agreement(reset));
            let mut inflater = Inflater::new(agreement(reset));
            let text = b"{\"user\":\"ada\",\"text\":\"hello hello hello hello\"}".repeat(40);
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let wire = deflater.compress(&text).to_vec();
                assert!(!wire.ends_with(&TAIL), "the tail is removed");
                sizes.push(wire.len());
                let mut out = Vec::new();
                inflater.inflate(&wire, true, &mut out, text.len()).unwrap();
                assert_eq!(out, text);
            }
            if reset {
                assert_eq!(sizes[0], sizes[2], "each message compressed on its own");
            } else {
                assert!(
                    sizes[1] < sizes[0],
                    "later messages refer to earlier ones: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_inflating_the_rest() {
        let mut deflater = Deflater::new(agreement(false));
        let bomb = deflater.compress(&vec![0u8; 64 << 20]).to_vec();
        assert!(
            bomb.len() < 128 << 10,
            "64 MiB of zeros is small: {}",
            bomb.len()
        );
        let mut inflater = Inflater::new(agreement(false));
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&bomb, true, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(
            out.capacity() <= (1 << 20) + 2 * INFLATE_CHUNK + 2,
            "{}",
            out.capacity()
        );
    }

    #[test]
    fn a_big_message_leaves_no_big_buffer_behind() {
        let mut deflater = Deflater::new(agreement(false));
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(deflater.compress(&noise).len() > KEPT_OUTPUT);
        deflater.trim();
        assert_eq!(deflater.out.capacity(), 0);
        deflater.compress(b"small");
        deflater.trim();
        assert!(
            deflater.out.capacity() > 0,
            "a small buffer is kept for the next message"
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inflater = Inflater::new(agreement(false));
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&[0xff; 16], true, &mut out, 1000),
            Err(InflateError::Corrupt)
        );
    }
}
