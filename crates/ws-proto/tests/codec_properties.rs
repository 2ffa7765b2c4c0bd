//! The frame decoder never panics, whatever the bytes and however they are split; a
//! byte stream gives the same events however it is cut into reads; every protocol error
//! carries a close code that may be sent; and valid frame sequences, cut anywhere, come
//! back as the messages that were sent.

use bytes::BytesMut;
use proptest::prelude::*;
use ws_proto::codec::{close_code, encode_frame, opcode, Decoder, Event, Limits, Role};

/// Decodes `chunks` one after another as reads; the events and, if it came, the error.
fn decode_in_reads(role: Role, limits: Limits, chunks: &[&[u8]]) -> (Vec<Event>, Option<u16>) {
    let mut decoder = Decoder::new(role, limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        close_code::is_sendable(e.close_code),
                        "{e} carries an unsendable code"
                    );
                    return (events, Some(e.close_code));
                }
            }
        }
    }
    (events, None)
}

/// `bytes` cut at the given points (taken modulo its length, sorted).
fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for p in at {
        pieces.push(&bytes[from..p]);
        from = p;
    }
    pieces.push(&bytes[from..]);
    pieces
}

fn small_limits() -> Limits {
    Limits {
        max_message_size: 4096,
        max_frame_size: 1024,
    }
}

/// A message as a client sends it: opcode, payload, and how many fragments.
fn message() -> impl Strategy<Value = (u8, Vec<u8>, usize)> {
    prop_oneof![
        (
            Just(opcode::TEXT),
            "[a-zé€😀 ]{0,300}".prop_map(String::into_bytes),
            1..4usize
        ),
        (
            Just(opcode::BINARY),
            proptest::collection::vec(any::<u8>(), 0..300),
            1..4usize
        ),
        (
            Just(opcode::PING),
            proptest::collection::vec(any::<u8>(), 0..125),
            Just(1usize)
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic_and_decode_the_same_however_split(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        points in proptest::collection::vec(any::<usize>(), 0..8),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let whole = decode_in_reads(role, small_limits(), &[&bytes]);
        let split = decode_in_reads(role, small_limits(), &cut(&bytes, &points));
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn valid_client_frames_cut_anywhere_give_back_the_messages(
        messages in proptest::collection::vec(message(), 1..8),
        points in proptest::collection::vec(any::<usize>(), 0..12),
        mask in any::<[u8; 4]>(),
    ) {
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for (op, payload, fragments) in &messages {
            let size = payload.len().div_ceil(*fragments).max(1);
            let parts: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(size).collect() };
            for (i, part) in parts.iter().enumerate() {
                let frame_op = if i == 0 { *op } else { opcode::CONTINUATION };
                encode_frame(&mut wire, i + 1 == parts.len(), frame_op, part, Some(mask));
            }
            expected.push(match *op {
                opcode::TEXT => Event::Text(payload.clone().into()),
                opcode::BINARY => Event::Binary(payload.clone().into()),
                _ => Event::Ping(payload.clone().into()),
            });
        }
        let (events, error) = decode_in_reads(Role::Server, Limits::default(), &cut(&wire, &points));
        prop_assert_eq!(error, None);
        prop_assert_eq!(events, expected);
    }
}
