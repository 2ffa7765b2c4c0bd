//! codec: RFC 6455 frames as bytes ↔ values. No I/O happens here.
//!
//! The [`Decoder`] eats bytes from a read buffer and yields whole [`Event`]s: complete
//! messages (fragments reassembled, text checked as UTF-8 frame by frame), pings, pongs and
//! closes. Every rule it enforces is checked from the frame header before any payload is
//! buffered, so a peer that announces a 2^63-byte frame costs nothing. A violation is a
//! [`ProtocolError`] carrying the close code of RFC 6455 §7.4.1 that the connection must
//! be closed with. [`encode_frame`] writes one frame, masked or not, into an output buffer.
//! With permessage-deflate agreed ([`Decoder::set_inflater`]), messages whose first frame
//! has RSV1 are inflated here, frame by frame, within `max_message_size`.

use crate::deflate::{InflateError, Inflater};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Frame opcodes (RFC 6455 §5.2). Everything else is reserved.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;

    /// Control frames are the opcodes with the high bit set (§5.5).
    pub fn is_control(op: u8) -> bool {
        op & 0x8 != 0
    }
}

/// Close status codes used by the library itself (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const NO_STATUS: u16 = 1005;
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether `code` may appear in a close frame on the wire (§7.4.1, §7.4.2 and the IANA
    /// registry): 1000–1003, 1007–1014 and 3000–4999. 1004–1006 and 1015 are reserved for
    /// local use and must never be sent.
    pub fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Which end of the connection this decoder serves: a server requires masked frames
/// from its client, a client requires unmasked frames from its server (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Size limits of the decoder. Both are checked from frame headers, before buffering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest complete message (sum of its fragments). Default 16 MiB; a larger one
    /// closes with 1009 so a peer cannot make us buffer without bound.
    pub max_message_size: usize,
    /// Largest single frame. Default 16 MiB.
    pub max_frame_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
        }
    }
}

/// A rule of RFC 6455 the peer broke, with the close code that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub close_code: u16,
    pub reason: &'static str,
}

impl ProtocolError {
    const fn new(close_code: u16, reason: &'static str) -> Self {
        ProtocolError { close_code, reason }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.close_code)
    }
}

impl std::error::Error for ProtocolError {}

/// What the decoder delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message; `data` is valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame: the status code and reason if the peer sent one.
    Close(Option<(u16, String)>),
}

/// The fixed part of a frame header, as parsed from the wire (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the three bits 0b0111_0000 of the first byte.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`: `None` when more bytes are needed,
    /// otherwise the header and its length in bytes (2 to 14).
    pub fn parse(buf: &[u8]) -> Option<(FrameHeader, usize)> {
        if buf.len() < 2 {
            return None;
        }
        let (b0, b1) = (buf[0], buf[1]);
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut at) = match b1 & 0x7F {
            126 => (
                u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as u64,
                4,
            ),
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            n => (n as u64, 2),
        };
        let mask = if masked {
            let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(m)
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0F,
            mask,
            payload_len,
        };
        Some((header, at))
    }
}

/// The largest frame header: 2 bytes, 8 of length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;
/// RSV1 in the first header byte: the message is compressed (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Writes a frame header for a payload of `len` bytes into `out`; returns its length.
/// The shortest length encoding is always used (§5.2).
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = if fin { 0x80 } else { 0 } | (opcode & 0x0F);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = match len {
        n if n < 126 => {
            out[1] = mask_bit | n as u8;
            2
        }
        n if n <= 0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    if let Some(m) = mask {
        out[at..at + 4].copy_from_slice(&m);
        at += 4;
    }
    at
}

/// Writes one frame into `out`: header, then the payload (masked when `mask` is given).
pub fn encode_frame(
    out: &mut BytesMut,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, fin, opcode, payload.len(), mask);
    out.reserve(header_len + payload.len());
    out.put_slice(&header[..header_len]);
    let start = out.len();
    out.put_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m);
    }
}

/// Writes one whole message compressed with permessage-deflate: a final frame with RSV1.
pub fn encode_compressed_frame(
    out: &mut BytesMut,
    opcode: u8,
    compressed: &[u8],
    mask: Option<[u8; 4]>,
) {
    let start = out.len();
    encode_frame(out, true, opcode, compressed, mask);
    out[start] |= RSV1;
}

/// Builds the payload of a close frame: the code big-endian, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(reason.as_bytes());
    p
}

/// XORs `buf` with the 4-byte `mask` (§5.3), eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("chunk of 8")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A message being assembled (or inflated) from its frames.
struct Partial {
    opcode: u8,
    /// The payload so far (inflated when `compressed`).
    data: Vec<u8>,
    /// Bytes of `data` already known to be valid UTF-8 (text messages only).
    utf8_checked: usize,
    /// Its first frame had RSV1: every frame's payload is inflated.
    compressed: bool,
}

/// Turns a stream of bytes from one peer into [`Event`]s.
pub struct Decoder {
    role: Role,
    limits: Limits,
    partial: Option<Partial>,
    /// Total bytes (header + payload) the frame at the head of the buffer needs.
    wanted: usize,
    /// Set when permessage-deflate was agreed: RSV1 is then allowed on a message's first frame.
    inflater: Option<Inflater>,
    /// Whether the last message delivered came compressed.
    last_compressed: bool,
    /// The most bytes a compressed message has inflated to.
    max_inflated: usize,
}

impl Decoder {
    pub fn new(role: Role, limits: Limits) -> Self {
        Decoder {
            role,
            limits,
            partial: None,
            wanted: 2,
            inflater: None,
            last_compressed: false,
            max_inflated: 0,
        }
    }

    /// Accepts compressed messages from now on (permessage-deflate was agreed).
    pub fn set_inflater(&mut self, inflater: Inflater) {
        self.inflater = Some(inflater);
    }

    /// Whether the last text or binary message delivered had been compressed by the peer.
    pub fn last_compressed(&self) -> bool {
        self.last_compressed
    }

    /// The most bytes a compressed message has inflated to (one refused as too big included).
    pub fn max_inflated(&self) -> usize {
        self.max_inflated
    }

    /// Whether an inflater has been made (a compressed message was received).
    pub fn inflater_allocated(&self) -> bool {
        self.inflater.as_ref().is_some_and(Inflater::is_allocated)
    }

    /// How many bytes the read buffer must hold before [`decode`](Self::decode) can make
    /// progress: callers reserve this much once instead of growing the buffer piecemeal.
    pub fn bytes_wanted(&self) -> usize {
        self.wanted
    }

    /// Takes the next event out of `buf`, consuming exactly the frames it is made of.
    /// `Ok(None)` means more bytes are needed. After an error the connection must close
    /// with the error's code; the decoder is not used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            let Some((header, header_len)) = FrameHeader::parse(buf) else {
                self.wanted = header_len_hint(buf);
                return Ok(None);
            };
            self.check_header(&header)?;
            // check_header bounded payload_len by usize limits, so this cannot overflow.
            let total = header_len + header.payload_len as usize;
            if buf.len() < total {
                self.wanted = total;
                return Ok(None);
            }
            self.wanted = 2;
            let _ = buf.split_to(header_len);
            let mut payload = buf.split_to(header.payload_len as usize);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask);
            }
            if let Some(event) = self.on_frame(&header, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Judges a complete frame header (without its payload) by every rule the header
    /// alone decides; returns the payload length. For readers that fetch the payload only
    /// once the header passed.
    pub fn check_header_bytes(&self, header: &[u8]) -> Result<Option<u64>, ProtocolError> {
        match FrameHeader::parse(header) {
            Some((h, _)) => self.check_header(&h).map(|()| Some(h.payload_len)),
            None => Ok(None),
        }
    }

    /// Every rule that can be judged from the header alone (§5.2, §5.4, §5.5).
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        use close_code::*;
        let compressed = h.rsv == RSV1;
        if h.rsv != 0 && !compressed {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "reserved bits set without a negotiated extension",
            ));
        }
        if compressed {
            if self.inflater.is_none() {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "RSV1 set without permessage-deflate",
                ));
            }
            if !matches!(h.opcode, opcode::TEXT | opcode::BINARY) {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "RSV1 set on a continuation or control frame",
                ));
            }
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "client frame is not masked",
                ))
            }
            (Role::Client, true) => {
                return Err(ProtocolError::new(PROTOCOL_ERROR, "server frame is masked"))
            }
            _ => {}
        }
        match h.opcode {
            opcode::CONTINUATION if self.partial.is_none() => {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "continuation frame without a message to continue",
                ));
            }
            opcode::TEXT | opcode::BINARY if self.partial.is_some() => {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "new data frame inside a fragmented message",
                ));
            }
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !h.fin {
                    return Err(ProtocolError::new(
                        PROTOCOL_ERROR,
                        "fragmented control frame",
                    ));
                }
                if h.payload_len > 125 {
                    return Err(ProtocolError::new(
                        PROTOCOL_ERROR,
                        "control frame payload longer than 125 bytes",
                    ));
                }
            }
            _ => return Err(ProtocolError::new(PROTOCOL_ERROR, "reserved opcode")),
        }
        if h.payload_len > self.limits.max_frame_size as u64 {
            return Err(ProtocolError::new(
                TOO_BIG,
                "frame larger than the configured maximum",
            ));
        }
        // A compressed message is limited as it is inflated; its frames by max_frame_size.
        let inflating = compressed || self.partial.as_ref().is_some_and(|p| p.compressed);
        if !opcode::is_control(h.opcode) && !inflating {
            let so_far = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
            if so_far + h.payload_len > self.limits.max_message_size as u64 {
                return Err(too_big());
            }
        }
        Ok(())
    }

    /// Handles one complete, unmasked frame; returns an event when one is complete.
    fn on_frame(
        &mut self,
        h: &FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Event>, ProtocolError> {
        match h.opcode {
            opcode::PING => Ok(Some(Event::Ping(payload.freeze()))),
            opcode::PONG => Ok(Some(Event::Pong(payload.freeze()))),
            opcode::CLOSE => parse_close(&payload).map(|c| Some(Event::Close(c))),
            opcode::TEXT | opcode::BINARY if h.fin && h.rsv == 0 => {
                self.last_compressed = false;
                if h.opcode == opcode::TEXT {
                    check_utf8_complete(&payload)?;
                    Ok(Some(Event::Text(payload.freeze())))
                } else {
                    Ok(Some(Event::Binary(payload.freeze())))
                }
            }
            opcode::TEXT | opcode::BINARY => {
                let mut partial = Partial {
                    opcode: h.opcode,
                    data: Vec::new(),
                    utf8_checked: 0,
                    compressed: h.rsv == RSV1,
                };
                self.add_fragment(&mut partial, &payload, h.fin)?;
                if h.fin {
                    return Ok(Some(self.complete(partial)?));
                }
                self.partial = Some(partial);
                Ok(None)
            }
            _ => {
                // Continuation: check_header guaranteed a partial message exists.
                let mut partial = self
                    .partial
                    .take()
                    .expect("continuation has a partial message");
                self.add_fragment(&mut partial, &payload, h.fin)?;
                if h.fin {
                    return Ok(Some(self.complete(partial)?));
                }
                self.partial = Some(partial);
                Ok(None)
            }
        }
    }

    /// Adds one frame's payload to a message (inflated if it is compressed) and checks
    /// the text so far.
    fn add_fragment(
        &mut self,
        p: &mut Partial,
        payload: &[u8],
        last: bool,
    ) -> Result<(), ProtocolError> {
        if p.compressed {
            let inflater = self.inflater.as_mut().expect("check_header allowed RSV1");
            let inflated =
                inflater.inflate(payload, last, &mut p.data, self.limits.max_message_size);
            self.max_inflated = self.max_inflated.max(p.data.len());
            inflated.map_err(|e| match e {
                InflateError::TooBig => too_big(),
                InflateError::Corrupt => ProtocolError::new(
                    close_code::INVALID_PAYLOAD,
                    "compressed message is not valid deflate data",
                ),
            })?;
        } else {
            p.data.extend_from_slice(payload);
        }
        check_utf8_prefix(p)
    }

    /// The event of a message whose last frame has been added.
    fn complete(&mut self, p: Partial) -> Result<Event, ProtocolError> {
        self.last_compressed = p.compressed;
        if p.opcode == opcode::TEXT {
            if p.utf8_checked != p.data.len() {
                return Err(invalid_utf8());
            }
            Ok(Event::Text(p.data.into()))
        } else {
            Ok(Event::Binary(p.data.into()))
        }
    }
}

/// How many bytes a header whose first bytes are `buf` needs in total.
fn header_len_hint(buf: &[u8]) -> usize {
    match buf.get(1) {
        None => 2,
        Some(b1) => {
            let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
            match b1 & 0x7F {
                126 => 4 + mask,
                127 => 10 + mask,
                _ => 2 + mask,
            }
        }
    }
}

fn too_big() -> ProtocolError {
    ProtocolError::new(
        close_code::TOO_BIG,
        "message larger than the configured maximum",
    )
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError::new(
        close_code::INVALID_PAYLOAD,
        "text message is not valid UTF-8",
    )
}

fn check_utf8_complete(data: &[u8]) -> Result<(), ProtocolError> {
    std::str::from_utf8(data)
        .map(|_| ())
        .map_err(|_| invalid_utf8())
}

/// Validates the unchecked tail of a text message being reassembled. A sequence cut at
/// the end of a fragment is fine (the next fragment may finish it); any byte that can
/// never be valid fails at once, so bad text is rejected at the frame that carries it.
fn check_utf8_prefix(p: &mut Partial) -> Result<(), ProtocolError> {
    if p.opcode != opcode::TEXT {
        return Ok(());
    }
    match std::str::from_utf8(&p.data[p.utf8_checked..]) {
        Ok(_) => p.utf8_checked = p.data.len(),
        Err(e) if e.error_len().is_none() => p.utf8_checked += e.valid_up_to(),
        Err(_) => return Err(invalid_utf8()),
    }
    Ok(())
}

/// Parses a close frame's body (§5.5.1): empty, or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::new(
            close_code::PROTOCOL_ERROR,
            "close frame with a 1-byte body",
        )),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_sendable(code) {
                return Err(ProtocolError::new(
                    close_code::PROTOCOL_ERROR,
                    "invalid close code",
                ));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| {
                ProtocolError::new(
                    close_code::INVALID_PAYLOAD,
                    "close reason is not valid UTF-8",
                )
            })?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn client_frame(fin: bool, op: u8, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(&mut out, fin, op, payload, Some(MASK));
        out
    }

    fn server() -> Decoder {
        Decoder::new(Role::Server, Limits::default())
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(e) = d.decode(&mut buf)? {
            out.push(e);
        }
        Ok(out)
    }

    fn code_of(bytes: &[u8]) -> u16 {
        decode_all(&mut server(), bytes).unwrap_err().close_code
    }

    #[test]
    fn rfc_5_7_single_frame_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&mut server(), &bytes).unwrap(),
            vec![Event::Text(Bytes::from_static(b"Hello"))]
        );
        assert_eq!(&client_frame(true, opcode::TEXT, b"Hello")[..], &bytes[..]);
    }

    #[test]
    fn rfc_5_7_unmasked_frames_encode_exactly() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, opcode::TEXT, b"Hello", None);
        assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(&mut out, true, opcode::BINARY, &[0u8; 256], None);
        assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        encode_frame(&mut out, true, opcode::BINARY, &vec![0u8; 65536], None);
        assert_eq!(&out[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn length_encodings_at_every_boundary_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let events =
                decode_all(&mut server(), &client_frame(true, opcode::BINARY, &payload)).unwrap();
            assert_eq!(
                events,
                vec![Event::Binary(Bytes::from(payload))],
                "len {len}"
            );
        }
    }

    #[test]
    fn a_frame_split_anywhere_decodes_once_complete() {
        let bytes = client_frame(true, opcode::TEXT, "héllo wörld".as_bytes());
        for cut in 0..bytes.len() {
            let mut d = server();
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(d.decode(&mut buf).unwrap(), None, "cut {cut}");
            assert!(d.bytes_wanted() > cut);
            buf.extend_from_slice(&bytes[cut..]);
            assert_eq!(
                d.decode(&mut buf).unwrap(),
                Some(Event::Text(Bytes::from("héllo wörld")))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn mask_matches_bytewise_xor_for_all_lengths_and_offsets() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| i as u8 * 7).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn fragments_are_reassembled_with_control_frames_between() {
        let mut bytes = client_frame(false, opcode::TEXT, b"frag");
        bytes.extend_from_slice(&client_frame(true, opcode::PING, b"p"));
        bytes.extend_from_slice(&client_frame(false, opcode::CONTINUATION, b"men"));
        bytes.extend_from_slice(&client_frame(true, opcode::CONTINUATION, b"ted"));
        let events = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(
            events,
            vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Text(Bytes::from_static(b"fragmented"))
            ]
        );
    }

    #[test]
    fn zero_length_payloads_of_every_kind_are_valid() {
        let mut bytes = BytesMut::new();
        for op in [
            opcode::TEXT,
            opcode::BINARY,
            opcode::PING,
            opcode::PONG,
            opcode::CLOSE,
        ] {
            bytes.extend_from_slice(&client_frame(true, op, b""));
        }
        bytes.extend_from_slice(&client_frame(false, opcode::TEXT, b""));
        bytes.extend_from_slice(&client_frame(true, opcode::CONTINUATION, b""));
        let events = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(
            events,
            vec![
                Event::Text(Bytes::new()),
                Event::Binary(Bytes::new()),
                Event::Ping(Bytes::new()),
                Event::Pong(Bytes::new()),
                Event::Close(None),
                Event::Text(Bytes::new()),
            ]
        );
    }

    #[test]
    fn unmasked_client_frame_is_1002() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, opcode::TEXT, b"x", None);
        assert_eq!(code_of(&out), 1002);
    }

    #[test]
    fn masked_server_frame_is_1002_for_a_client() {
        let mut d = Decoder::new(Role::Client, Limits::default());
        let err = decode_all(&mut d, &client_frame(true, opcode::TEXT, b"x")).unwrap_err();
        assert_eq!(err.close_code, 1002);
    }

    #[test]
    fn reserved_bits_and_reserved_opcodes_are_1002() {
        let mut f = client_frame(true, opcode::TEXT, b"x");
        f[0] |= 0x40;
        assert_eq!(code_of(&f), 1002);
        for op in [3u8, 7, 0xB, 0xF] {
            assert_eq!(code_of(&client_frame(true, op, b"")), 1002, "opcode {op}");
        }
    }

    #[test]
    fn continuation_without_start_and_new_message_inside_fragments_are_1002() {
        assert_eq!(
            code_of(&client_frame(true, opcode::CONTINUATION, b"x")),
            1002
        );
        let mut bytes = client_frame(false, opcode::TEXT, b"a");
        bytes.extend_from_slice(&client_frame(true, opcode::BINARY, b"b"));
        assert_eq!(code_of(&bytes), 1002);
    }

    #[test]
    fn control_frame_over_125_bytes_or_fragmented_is_1002() {
        assert_eq!(
            code_of(&client_frame(true, opcode::PING, &[0u8; 126])),
            1002
        );
        assert_eq!(code_of(&client_frame(false, opcode::PING, b"x")), 1002);
        assert!(decode_all(
            &mut server(),
            &client_frame(true, opcode::PING, &[0u8; 125])
        )
        .is_ok());
    }

    #[test]
    fn invalid_utf8_is_1007_also_across_fragments_and_fails_at_the_bad_fragment() {
        assert_eq!(
            code_of(&client_frame(true, opcode::TEXT, &[0xce, 0xba, 0xff])),
            1007
        );
        // "κ" split between two fragments is fine.
        let mut ok = client_frame(false, opcode::TEXT, &[0xce]);
        ok.extend_from_slice(&client_frame(true, opcode::CONTINUATION, &[0xba]));
        assert_eq!(
            decode_all(&mut server(), &ok).unwrap(),
            vec![Event::Text(Bytes::from("κ"))]
        );
        // A bad byte in the first fragment fails before the message ends.
        let mut d = server();
        let mut buf = client_frame(false, opcode::TEXT, &[b'a', 0xff]);
        assert_eq!(d.decode(&mut buf).unwrap_err().close_code, 1007);
        // A sequence left incomplete by the final fragment fails.
        let mut cut = client_frame(false, opcode::TEXT, b"a");
        cut.extend_from_slice(&client_frame(true, opcode::CONTINUATION, &[0xce]));
        assert_eq!(code_of(&cut), 1007);
    }

    #[test]
    fn close_bodies_are_validated() {
        assert_eq!(
            decode_all(
                &mut server(),
                &client_frame(true, opcode::CLOSE, &close_payload(1000, "bye"))
            )
            .unwrap(),
            vec![Event::Close(Some((1000, "bye".into())))]
        );
        assert_eq!(code_of(&client_frame(true, opcode::CLOSE, &[0x03])), 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(
                code_of(&client_frame(true, opcode::CLOSE, &close_payload(code, ""))),
                1002,
                "code {code}"
            );
        }
        let mut bad_reason = close_payload(1000, "");
        bad_reason.push(0xff);
        assert_eq!(
            code_of(&client_frame(true, opcode::CLOSE, &bad_reason)),
            1007
        );
    }

    #[test]
    fn oversized_message_is_1009_from_the_header_alone() {
        let limits = Limits {
            max_message_size: 1000,
            max_frame_size: 1000,
        };
        let mut d = Decoder::new(Role::Server, limits);
        // Only the header of a 2^40-byte frame: rejected without waiting for the payload.
        let mut buf = BytesMut::from(&[0x82u8, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4][..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().close_code, 1009);
        // Fragments that together pass the limit.
        let mut d = Decoder::new(Role::Server, limits);
        let mut bytes = client_frame(false, opcode::BINARY, &[0u8; 600]);
        bytes.extend_from_slice(&client_frame(true, opcode::CONTINUATION, &[0u8; 600]));
        assert_eq!(decode_all(&mut d, &bytes).unwrap_err().close_code, 1009);
        // Exactly at the limit is fine.
        let mut d = Decoder::new(Role::Server, limits);
        assert!(decode_all(&mut d, &client_frame(true, opcode::BINARY, &[0u8; 1000])).is_ok());
    }

    #[test]
    fn frames_from_tungstenite_decode_identically() {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        use tungstenite::protocol::frame::Frame;
        for (len, mask) in [
            (7usize, [1u8, 2, 3, 4]),
            (300, [0xde, 0xad, 0xbe, 0xef]),
            (70_000, [9, 8, 7, 6]),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let mut frame = Frame::message(payload.clone(), OpCode::Data(Data::Binary), true);
            frame.header_mut().mask = Some(mask);
            let mut wire = Vec::new();
            frame.format(&mut wire).unwrap();
            assert_eq!(
                decode_all(&mut server(), &wire).unwrap(),
                vec![Event::Binary(Bytes::from(payload.clone()))]
            );
            let mut ours = BytesMut::new();
            encode_frame(&mut ours, true, opcode::BINARY, &payload, Some(mask));
            assert_eq!(
                &ours[..],
                &wire[..],
                "our encoding of {len} bytes equals tungstenite's"
            );
        }
    }
}
