//! Property-based fuzzing of frame decoding (cargo-fuzz needs a nightly
//! toolchain, which CI does not have): any text, and mutations of valid
//! requests, decode to a request or to a `bad_request`/`unknown_type` error,
//! never a panic; SDP and candidate checks likewise on arbitrary input.

use proptest::prelude::*;
use rendezvous::protocol::{decode_request, ErrorCode};
use rendezvous::signaling::{validate_candidate, validate_sdp};

const VALID: &[&str] = &[
    r#"{"type":"find_match","rid":1,"max_players":4,"mode":"duel","filters":{"map":"moon","ranked":true}}"#,
    r#"{"type":"create_room","rid":"a","private":true,"data":{"x":[1,2,{"y":null}]},"allowed_players":["p_1"]}"#,
    r#"{"type":"join_room","code":"K7QX2M"}"#,
    r#"{"type":"offer","to":"p_2","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}"#,
    r#"{"type":"ice_candidate","to":"p_2","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    r#"{"type":"chat","text":"héllo"}"#,
    r#"{"type":"subscribe_stats","interval_ms":1000}"#,
];

fn check(text: &str) {
    let d = decode_request(text);
    if let Err(e) = d.request {
        assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownType),
            "{text:?} gave {e:?}"
        );
        assert!(!e.message.is_empty());
    }
    assert!(d.rid.is_null() || d.rid.is_string() || d.rid.is_i64() || d.rid.is_u64());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_decodes_without_panic(text in ".{0,400}") {
        check(&text);
    }

    #[test]
    fn mutated_requests_decode_without_panic(
        which in 0..VALID.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = VALID[which].as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        // WebSocket text frames are UTF-8 by construction.
        let text = String::from_utf8_lossy(&bytes);
        check(&text);
        let _ = validate_sdp(&text, 32_768);
        let _ = validate_candidate(&text);
    }
}

#[test]
fn every_valid_sample_decodes() {
    for v in VALID {
        assert!(decode_request(v).request.is_ok(), "{v}");
    }
}
