//! platform_bytes: the byte work of the evluaserver runtime, for its Lua glue.
//!
//! Under evluaserver every I/O call yields the Lua state, so the glue (`lua/platform.lua`)
//! does the I/O itself and calls these functions, which never call back into Lua, for
//! everything else: judging frame headers before payloads are read, unmasking, UTF-8,
//! reassembling fragments across `ws.handle_msg` calls (one [`FrameDecoder`] per socket),
//! building frames, and byte buffers to hand to `platform.*` when `ffi` is not there.

use crate::codec::{self, Decoder, Event, Limits, Role};
use crate::handshake;
use crate::random::fill as fill_random;
use bytes::BytesMut;
use mlua::{Lua, Table, UserData, UserDataMethods, Value};

/// One socket's frame decoder, fed exactly one frame at a time.
pub struct FrameDecoder(Decoder);

/// How many bytes a header starting with `first_two` has in total (2 to 14).
fn header_len(first_two: &[u8]) -> usize {
    let masked = first_two.get(1).is_some_and(|b| b & 0x80 != 0);
    let ext = match first_two.get(1).map(|b| b & 0x7F) {
        Some(126) => 2,
        Some(127) => 8,
        _ => 0,
    };
    2 + ext + if masked { 4 } else { 0 }
}

impl UserData for FrameDecoder {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // header_len(first_two_bytes) -> total header length
        methods.add_method("header_len", |_, _, first: mlua::String| {
            Ok(header_len(&first.as_bytes()))
        });
        // check(header) -> payload_len | nil, close_code, reason: every rule the header
        // alone decides (reserved bits and opcodes, masking, control frames, sizes).
        methods.add_method("check", |_, this, header: mlua::String| {
            Ok(match this.0.check_header_bytes(&header.as_bytes()) {
                Ok(Some(len)) => (Some(len), None, None),
                Ok(None) => return Err(mlua::Error::runtime("frame decoder: incomplete header")),
                Err(e) => (None, Some(e.close_code), Some(e.reason)),
            })
        });
        // frame(header, payload) -> kind, data [, code, reason] | "partial" | nil, code, reason
        // kind: "text", "binary", "ping", "pong", "close".
        methods.add_method_mut(
            "frame",
            |lua, this, (header, payload): (mlua::String, mlua::String)| {
                let mut buf =
                    BytesMut::with_capacity(header.as_bytes().len() + payload.as_bytes().len());
                buf.extend_from_slice(&header.as_bytes());
                buf.extend_from_slice(&payload.as_bytes());
                let nil = Value::Nil;
                let s = |b: &[u8]| lua.create_string(b).map(Value::String);
                Ok(match this.0.decode(&mut buf) {
                    Ok(None) => (
                        Value::String(lua.create_string("partial")?),
                        nil.clone(),
                        nil.clone(),
                        nil,
                    ),
                    Ok(Some(event)) => match event {
                        Event::Text(d) => (s(b"text")?, s(&d)?, nil.clone(), nil),
                        Event::Binary(d) => (s(b"binary")?, s(&d)?, nil.clone(), nil),
                        Event::Ping(d) => (s(b"ping")?, s(&d)?, nil.clone(), nil),
                        Event::Pong(d) => (s(b"pong")?, s(&d)?, nil.clone(), nil),
                        Event::Close(None) => (s(b"close")?, s(b"")?, nil.clone(), nil),
                        Event::Close(Some((code, reason))) => (
                            s(b"close")?,
                            s(reason.as_bytes())?,
                            Value::Integer(code as i64),
                            s(reason.as_bytes())?,
                        ),
                    },
                    Err(e) => (
                        nil,
                        Value::Integer(e.close_code as i64),
                        s(e.reason.as_bytes())?,
                        Value::Nil,
                    ),
                })
            },
        );
    }
}

/// A byte buffer for `platform.*` calls when `ffi` is not available: the glue passes
/// `{buffer = b, offset = n}` where evluaserver expects a pointer.
pub struct ByteBuffer(Vec<u8>);

impl UserData for ByteBuffer {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("len", |_, this, ()| Ok(this.0.len()));
        // write_at(offset, data) -> bytes written (bounded by the buffer)
        methods.add_method_mut(
            "write_at",
            |_, this, (offset, data): (usize, mlua::String)| {
                let data = data.as_bytes();
                let end = offset
                    .checked_add(data.len())
                    .filter(|&e| e <= this.0.len())
                    .ok_or_else(|| mlua::Error::runtime("buffer: write past the end"))?;
                this.0[offset..end].copy_from_slice(&data);
                Ok(data.len())
            },
        );
        // read_at(offset, n) -> string
        methods.add_method("read_at", |lua, this, (offset, n): (usize, usize)| {
            let end = offset
                .checked_add(n)
                .filter(|&e| e <= this.0.len())
                .ok_or_else(|| mlua::Error::runtime("buffer: read past the end"))?;
            lua.create_string(&this.0[offset..end])
        });
    }
}

/// Adds the glue's functions to `core`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "frame_decoder",
        lua.create_function(|_, (role, max_message_size): (String, Option<usize>)| {
            let role = match role.as_str() {
                "server" => Role::Server,
                "client" => Role::Client,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "frame_decoder: role must be server or client, got {other}"
                    )))
                }
            };
            let max = max_message_size.unwrap_or(Limits::default().max_message_size);
            Ok(FrameDecoder(Decoder::new(
                role,
                Limits {
                    max_message_size: max,
                    max_frame_size: max,
                },
            )))
        })?,
    )?;
    // encode_frame(op, payload, masked) -> bytes of one final frame (masked with a fresh
    // random mask when `masked`).
    core.set(
        "encode_frame",
        lua.create_function(|lua, (op, payload, masked): (u8, mlua::String, bool)| {
            let mut out = BytesMut::new();
            let mask = masked.then(|| {
                let mut m = [0u8; 4];
                fill_random(&mut m);
                m
            });
            codec::encode_frame(&mut out, true, op & 0x0F, &payload.as_bytes(), mask);
            lua.create_string(&out)
        })?,
    )?;
    core.set(
        "close_payload",
        lua.create_function(|lua, (code, reason): (u16, Option<String>)| {
            lua.create_string(codec::close_payload(code, reason.as_deref().unwrap_or("")))
        })?,
    )?;
    core.set(
        "buffer",
        lua.create_function(|_, n: usize| Ok(ByteBuffer(vec![0; n])))?,
    )?;
    // client_key() -> a fresh Sec-WebSocket-Key
    core.set(
        "client_key",
        lua.create_function(|_, ()| {
            let mut r = [0u8; 16];
            fill_random(&mut r);
            Ok(handshake::client_key(r))
        })?,
    )?;
    // parse_url(url) -> {secure=, host=, port=, target=} | error
    core.set(
        "parse_url",
        lua.create_function(|lua, url: String| {
            let u = crate::client::parse_url(&url).map_err(mlua::Error::runtime)?;
            let t = lua.create_table()?;
            t.set("secure", u.secure)?;
            t.set("host", u.host)?;
            t.set("port", u.port)?;
            t.set("target", u.target)?;
            Ok(t)
        })?,
    )?;
    Ok(())
}
