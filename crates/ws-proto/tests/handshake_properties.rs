//! The request-head parser never panics on any bytes, gives the same answer for a head
//! whether it arrived whole or only its beginning was seen first (a prefix is either
//! "read more" or the same verdict), and never accepts more than its limits.

use proptest::prelude::*;
use ws_proto::handshake::{parse_request, HeadError};

const MAX_HEADERS: usize = 16;
const MAX_BYTES: usize = 1024;

/// Bytes that look like an HTTP head more often than random bytes do.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"GET /chat HTTP/1.1\r\n".to_vec()),
        Just(b"Host: x\r\n".to_vec()),
        Just(b"Upgrade: websocket\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        "[ -~]{0,40}\r\n".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(line, 0..24).prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_bytes_parse_without_panic_and_a_prefix_never_contradicts_the_whole(
        bytes in head_like(),
        cut in any::<usize>(),
    ) {
        let whole = parse_request(&bytes, MAX_HEADERS, MAX_BYTES);
        if let Ok(Some((head, len))) = &whole {
            prop_assert!(*len <= MAX_BYTES && *len <= bytes.len());
            prop_assert!(head.headers.len() <= MAX_HEADERS);
        }
        let prefix = &bytes[..cut % (bytes.len() + 1)];
        match parse_request(prefix, MAX_HEADERS, MAX_BYTES) {
            Ok(None) => {}
            Ok(Some((head, len))) => {
                // A complete head in the prefix is the same head in the whole.
                let Ok(Some((whole_head, whole_len))) = &whole else {
                    return Err(TestCaseError::fail(format!("prefix complete, whole {whole:?}")));
                };
                prop_assert_eq!((&head, len), (whole_head, *whole_len));
            }
            Err(HeadError::TooLarge) => prop_assert_eq!(&whole, &Err(HeadError::TooLarge)),
            Err(HeadError::Malformed(_)) => prop_assert!(matches!(whole, Err(HeadError::Malformed(_)))),
        }
    }
}
