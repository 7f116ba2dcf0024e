//! Property-based fuzzing of frame decoding and of the signaling checks
//! (cargo-fuzz needs a nightly toolchain, which CI does not have).
//!
//! Random text almost never gets past a JSON parser, so the inputs start
//! from real material: request frames (offers and answers carrying the real
//! browser SDPs of tests/fixtures/sdp, candidates from the real candidate
//! lists) mutated *inside* their JSON structure, real SDPs mutated line by
//! line, real candidate lines mutated token by token. Every input must be
//! answered without a panic, with the error codes and the bounded, printable
//! messages the protocol promises; and what stays valid must stay accepted.

use std::sync::OnceLock;

use crate::protocol::{decode_request, valid_rid, ErrorCode};
use crate::signaling::{validate_candidate, validate_sdp};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sdp");
/// The server's default `--max-sdp-bytes`.
const MAX_SDP: usize = 32_768;

const VALID: &[&str] = &[
    r#"{"type":"find_match","rid":1,"max_players":4,"mode":"duel","filters":{"map":"moon","ranked":true}}"#,
    r#"{"type":"create_room","rid":"a","private":true,"data":{"x":[1,2,{"y":null}]},"allowed_players":["p_1"]}"#,
    r#"{"type":"join_room","code":"K7QX2M"}"#,
    r#"{"type":"join_room","rid":9,"room_id":"7b1c9a52-0000-4000-8000-000000000000"}"#,
    r#"{"type":"list_rooms","status":"waiting","mode":"duel","limit":10}"#,
    r#"{"type":"finish_game","result":{"winner":"p_1"}}"#,
    r#"{"type":"set_room_data","data":{"map":"moon"}}"#,
    r#"{"type":"set_player_data","data":{"ready":true}}"#,
    r#"{"type":"kick","player_id":"p_2"}"#,
    r#"{"type":"chat","text":"héllo"}"#,
    r#"{"type":"set_ready","ready":true}"#,
    r#"{"type":"send","to":"p_2","data":{"move":[4,2]}}"#,
    r#"{"type":"subscribe_stats","interval_ms":1000}"#,
    r#"{"type":"subscribe_rooms","mode":"duel"}"#,
    r#"{"type":"leave_room"}"#,
    r#"{"type":"start_game"}"#,
    r#"{"type":"ping","rid":"p"}"#,
    r#"{"type":"unsubscribe_stats"}"#,
    r#"{"type":"unsubscribe_rooms"}"#,
    r#"{"type":"queue_match","rid":3,"mode":"duel","max_players":4,"min_players":2,"skill":1500.5,"skill_window":50,"regions":{"eu":40,"us":120},"max_rtt_ms":100,"filters":{"map":"moon"},"backfill":true}"#,
    r#"{"type":"cancel_match","rid":4}"#,
    r#"{"type":"create_party","max_size":3}"#,
    r#"{"type":"join_party","rid":"j","code":"K7QX2M"}"#,
    r#"{"type":"leave_party"}"#,
];

/// The real browser SDPs of the fixtures, as captured (CRLF).
fn sdps() -> &'static [String] {
    static SDPS: OnceLock<Vec<String>> = OnceLock::new();
    SDPS.get_or_init(|| {
        let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
            .expect("fixtures")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sdp"))
            .collect();
        files.sort();
        let sdps: Vec<String> = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(sdps.len() >= 8, "the SDP fixtures are there");
        sdps
    })
}

/// The real candidate lines of the fixtures.
fn candidates() -> &'static [String] {
    static CANDIDATES: OnceLock<Vec<String>> = OnceLock::new();
    CANDIDATES.get_or_init(|| {
        let mut all = Vec::new();
        for f in ["chromium-candidates.txt", "firefox-candidates.txt"] {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{f}")).unwrap();
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("candidate:"))
                    .map(String::from),
            );
        }
        assert!(all.len() >= 10, "the candidate fixtures are there");
        all
    })
}

/// Real frames: the samples above, and signals carrying real SDPs and
/// candidates (both forms of the `candidate` field).
fn frames() -> &'static [Value] {
    static FRAMES: OnceLock<Vec<Value>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut f: Vec<Value> = VALID
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        for (i, sdp) in sdps().iter().enumerate() {
            let kind = if sdp.contains("a=setup:actpass") {
                "offer"
            } else {
                "answer"
            };
            f.push(json!({"type": kind, "rid": i, "to": "p_2", "sdp": sdp}));
        }
        for (i, c) in candidates().iter().enumerate() {
            f.push(json!({"type": "ice_candidate", "rid": format!("c{i}"), "to": "p_2",
                "candidate": {"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Uqnz"}}));
            f.push(json!({"type": "ice_candidate", "to": "p_2", "candidate": c}));
        }
        f.push(json!({"type": "ice_candidate", "to": "p_2", "candidate": ""}));
        f
    })
}

/// Decodes `text` and checks what the protocol promises for any frame; returns
/// the decoded request's type, or None for an error.
fn check(text: &str) -> Option<&'static str> {
    let d = decode_request(text);
    assert!(
        d.rid.is_null() || valid_rid(&d.rid),
        "{text:.200}: echoed an invalid rid {}",
        d.rid
    );
    match d.request {
        Ok(r) => Some(r.kind()),
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownType),
                "{text:.200} gave {e:?}"
            );
            assert!(!e.message.is_empty());
            None
        }
    }
}

/// Error text meant for a client: non-empty, bounded, no raw control
/// characters reflected from the input.
fn assert_client_text(msg: &str, input: &str) {
    assert!(!msg.is_empty());
    assert!(
        msg.len() <= 600,
        "{} bytes of error for {input:.80}",
        msg.len()
    );
    assert!(
        !msg.chars().any(char::is_control),
        "control character in {msg:?}"
    );
}

/// Every place inside a JSON value: a path of keys and indexes.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

fn paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Seg::Key(k.clone()));
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Seg::At(i));
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::At(i) => &mut v[*i],
    })
}

/// Values a hostile or careless client may put anywhere.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(1e308),
            json!(0.5),
            json!(""),
            json!("x".repeat(65)),
            json!("\u{0}\u{1f}\u{7f}\u{feff}"),
            json!([]),
            json!({}),
            json!([1, "a", null]),
            json!({"a": {"b": []}}),
            json!("find_match"),
            json!("offer"),
            json!("ice_candidate"),
            json!("candidate:1 1 udp 1 10.0.0.1 5 typ host"),
        ]),
        ".{0,40}".prop_map(Value::from),
    ]
}

/// A key for an inserted field: one the requests know, or an unknown one.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "rid",
            "to",
            "sdp",
            "candidate",
            "sdpMid",
            "data",
            "max_players",
            "mode",
            "filters",
            "code",
            "room_id",
            "private",
            "text",
            "interval_ms",
            "limit",
        ])
        .prop_map(String::from),
        "[a-z_]{1,12}",
    ]
}

#[derive(Clone, Debug)]
enum Edit {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    SetType(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), leaf()).prop_map(|(i, v)| Edit::Replace(i, v)),
        any::<Index>().prop_map(Edit::Remove),
        (any::<Index>(), key(), leaf()).prop_map(|(i, k, v)| Edit::Insert(i, k, v)),
        any::<Index>().prop_map(Edit::SetType),
    ]
}

/// Every request type of the table, and one that is not.
fn kinds() -> &'static [&'static str] {
    static KINDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut k = crate::protocol::REQUEST_TYPES.to_vec();
        k.push("no_such_type");
        k
    })
}

fn apply(v: &mut Value, e: &Edit) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    match e {
        Edit::Replace(i, new) => *at(v, i.get::<Vec<Seg>>(&all)) = new.clone(),
        Edit::Remove(i) => {
            let path = i.get::<Vec<Seg>>(&all);
            if let Some((last, parent)) = path.split_last() {
                match (at(v, parent), last) {
                    (Value::Object(m), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Seg::At(i)) => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        Edit::Insert(i, k, new) => {
            if let Value::Object(m) = at(v, i.get::<Vec<Seg>>(&all)) {
                m.insert(k.clone(), new.clone());
            }
        }
        Edit::SetType(i) => {
            if let Value::Object(m) = v {
                m.insert("type".into(), json!(i.get(kinds())));
            }
        }
    }
}

/// Mutations of an SDP's lines.
#[derive(Clone, Debug)]
enum LineEdit {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    Truncate(Index, Index),
    Byte(Index, Index, u8),
    Insert(Index, String),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let line = prop_oneof![
        "[a-z]=[ -~]{0,40}",
        Just("a=fingerprint:sha-256 00:11".to_string()),
        Just("m=application 9 UDP/DTLS/SCTP webrtc-datachannel".to_string()),
        Just("c=IN IP4 999.1.1.1".to_string()),
        Just("a=candidate:1 1 udp 1 10.0.0.1 5 typ host".to_string()),
    ];
    prop_oneof![
        any::<Index>().prop_map(LineEdit::Delete),
        any::<Index>().prop_map(LineEdit::Duplicate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Truncate(a, b)),
        (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(a, b, c)| LineEdit::Byte(a, b, c)),
        (any::<Index>(), line).prop_map(|(a, l)| LineEdit::Insert(a, l)),
    ]
}

fn apply_lines(lines: &mut Vec<String>, e: &LineEdit) {
    if lines.is_empty() {
        return;
    }
    match e {
        LineEdit::Delete(i) => {
            lines.remove(i.index(lines.len()));
        }
        LineEdit::Duplicate(i) => {
            let l = lines[i.index(lines.len())].clone();
            lines.insert(i.index(lines.len()), l);
        }
        LineEdit::Swap(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        LineEdit::Truncate(i, at) => {
            let n = i.index(lines.len());
            let l = &mut lines[n];
            let cut = at.index(l.len() + 1);
            let cut = (0..=cut)
                .rev()
                .find(|c| l.is_char_boundary(*c))
                .unwrap_or(0);
            l.truncate(cut);
        }
        LineEdit::Byte(i, at, b) => {
            let n = i.index(lines.len());
            let l = &mut lines[n];
            let mut bytes = std::mem::take(l).into_bytes();
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = *b;
            }
            *l = String::from_utf8_lossy(&bytes).into_owned();
        }
        LineEdit::Insert(i, new) => {
            let at = i.index(lines.len() + 1);
            lines.insert(at, new.clone());
        }
    }
}

/// Byte edits at drawn places: 0 replaces a byte, 1 inserts one, 2
/// removes one.
fn edit_bytes(bytes: &mut Vec<u8>, edits: Vec<(Index, u8, u8)>) {
    for (at, byte, op) in edits {
        let i = at.index(bytes.len() + 1);
        match op {
            0 if i < bytes.len() => bytes[i] = byte,
            1 => bytes.insert(i.min(bytes.len()), byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
}

/// The fuzz starts from a valid frame of every request type of the table,
/// so a type added to the table is fuzzed too (this fails until a sample of
/// it is added to `VALID`).
#[test]
fn every_request_type_has_a_valid_sample() {
    for kind in crate::protocol::REQUEST_TYPES {
        let decoded = frames()
            .iter()
            .filter_map(|f| check(&f.to_string()))
            .any(|k| k == *kind);
        assert!(decoded, "no valid sample of {kind} in VALID");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Real frames edited inside their JSON structure: a field's value
    /// replaced, a field removed, a field added, the type switched.
    #[test]
    fn frames_edited_inside_their_structure_decode_or_are_refused(
        which in any::<Index>(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let mut v = which.get(frames()).clone();
        for e in &edits {
            apply(&mut v, e);
        }
        let text = v.to_string();
        let kind = check(&text);
        let d = decode_request(&text);
        if let Value::Object(m) = &v {
            // The rid is echoed whenever it is valid, whatever else is wrong.
            let want = m.get("rid").filter(|r| valid_rid(r)).cloned().unwrap_or(Value::Null);
            prop_assert_eq!(&d.rid, &want, "{:.200}", text);
            // What decodes is the type the frame names.
            if let Some(k) = kind {
                prop_assert_eq!(Some(k), m.get("type").and_then(Value::as_str));
            }
            // An unknown type is `unknown_type` (an unreadable rid is
            // reported first, as `bad_request`).
            let rid_ok = m.get("rid").is_none_or(|r| r.is_null() || valid_rid(r));
            if let (Some(Value::String(t)), true) = (m.get("type"), rid_ok) {
                if !crate::protocol::REQUEST_TYPES.contains(&t.as_str()) {
                    prop_assert_eq!(d.request.unwrap_err().code, ErrorCode::UnknownType);
                }
            }
        }
    }

    /// "Unknown extra fields are ignored": any real frame with one more
    /// field of any value decodes to the same request.
    #[test]
    fn unknown_extra_fields_are_ignored(
        which in any::<Index>(),
        name in "[a-z]{1,8}_x",
        value in leaf(),
    ) {
        let mut v = which.get(frames()).clone();
        let before = check(&v.to_string());
        prop_assert!(before.is_some());
        v.as_object_mut().unwrap().insert(name, value);
        prop_assert_eq!(check(&v.to_string()), before);
    }

    /// The signal fast path's hand-written reader (trickle candidates)
    /// answers, when it answers, exactly what serde reads: the same kind,
    /// target, payload and relayed frame. Real frames are edited inside
    /// their structure and byte by byte, and laid out again with spaces
    /// and newlines and keys in another order.
    #[test]
    fn the_hand_written_candidate_reader_agrees_with_serde(
        which in any::<Index>(),
        edits in proptest::collection::vec(edit(), 0..3),
        bytes in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 0..4),
        pretty in any::<bool>(),
    ) {
        let mut v = which.get(frames()).clone();
        for e in &edits {
            apply(&mut v, e);
        }
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            v.to_string()
        };
        let mut raw = text.into_bytes();
        edit_bytes(&mut raw, bytes);
        let text = String::from_utf8_lossy(&raw);
        let (quick, serde) = crate::relay::decoded_both_ways(&text);
        if quick.is_some() {
            prop_assert_eq!(quick, serde, "{:.300}", text);
        }
    }

    /// The frames as text, edited byte by byte (the old fuzzer), and
    /// JSON-ish noise: never a panic.
    #[test]
    fn byte_edits_and_json_noise_decode_without_panic(
        which in any::<Index>(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..8),
        noise in r#"[{}\[\]":,a-z0-9 .\\-]{0,120}"#,
    ) {
        let mut bytes = which.get(frames()).to_string().into_bytes();
        edit_bytes(&mut bytes, edits);
        // WebSocket text frames are UTF-8 by construction.
        check(&String::from_utf8_lossy(&bytes));
        check(&noise);
        check(&format!("{{{noise}}}"));
    }

    /// Candidate lines edited token by token.
    #[test]
    fn edited_candidates_are_accepted_or_refused_with_a_clear_reason(
        which in any::<Index>(),
        edits in proptest::collection::vec((any::<Index>(), 0u8..4, prop_oneof![
            "[0-9]{1,12}",
            "[a-z]{1,8}",
            Just("typ".to_string()),
            Just("host".to_string()),
            Just("::1".to_string()),
            Just("999.0.0.1".to_string()),
            "[ -~]{0,10}",
            "\\PC{0,4}",
        ]), 1..4),
    ) {
        let mut tokens: Vec<String> =
            which.get(candidates()).split(' ').map(String::from).collect();
        for (at, op, tok) in edits {
            let i = at.index(tokens.len());
            match op {
                0 => tokens[i] = tok,
                1 => tokens.insert(i, tok),
                2 if tokens.len() > 1 => { tokens.remove(i); }
                _ => {
                    let j = at.index(tokens.len()).saturating_sub(1);
                    tokens.swap(i, j);
                }
            }
        }
        let line = tokens.join(" ");
        if let Err(e) = validate_candidate(&line) {
            assert_client_text(&e.to_string(), &line);
        }
    }
}

proptest! {
    // The SDP parser is slow in a debug build: fewer, bigger cases.
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Real SDPs edited line by line (deleted, repeated, swapped, cut,
    /// a byte changed, a line added), with either line ending.
    #[test]
    fn edited_sdps_are_accepted_or_refused_with_a_clear_reason(
        which in any::<Index>(),
        edits in proptest::collection::vec(line_edit(), 1..4),
        crlf in any::<bool>(),
    ) {
        let mut lines: Vec<String> =
            which.get(sdps()).lines().map(String::from).collect();
        for e in &edits {
            apply_lines(&mut lines, e);
        }
        let sdp = lines.join(if crlf { "\r\n" } else { "\n" }) + if crlf { "\r\n" } else { "\n" };
        if let Err(e) = validate_sdp(&sdp, MAX_SDP) {
            assert_client_text(&e.to_string(), &sdp);
        }
        // And the whole offer frame decodes, whatever the SDP holds.
        let frame = json!({"type": "offer", "to": "p_2", "sdp": sdp}).to_string();
        prop_assert_eq!(check(&frame), Some("offer"));
    }
}

/// Trickle candidates without `rid`, as the clients and the load generator
/// send them, take the hand-written reader (the others take serde).
#[test]
fn trickle_candidates_take_the_hand_written_reader() {
    let mut quick = 0;
    for f in frames() {
        let (q, s) = crate::relay::decoded_both_ways(&f.to_string());
        let trickle = f["type"] == "ice_candidate" && f.get("rid").is_none();
        assert_eq!(q.is_some(), trickle, "{f}");
        if q.is_some() {
            assert_eq!(q, s);
            quick += 1;
        }
    }
    assert!(quick > 2);
    // Keys in any order, spaces between them, the object form.
    let t = r#" { "candidate" : {"usernameFragment":null, "sdpMLineIndex" : 65535,
        "candidate":"candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host"} ,"to":"p_2","type":"ice_candidate"} "#;
    let (q, s) = crate::relay::decoded_both_ways(t);
    assert!(q.is_some());
    assert_eq!(q, s);
    // Refused by the reader, left to serde: an escape, a rid, a repeated
    // key, a number past u16, an unknown key, a trailing comma.
    for t in [
        r#"{"type":"ice_candidate","to":"p\u005f2","candidate":"x"}"#,
        r#"{"type":"ice_candidate","rid":1,"to":"p_2","candidate":"x"}"#,
        r#"{"type":"ice_candidate","to":"p_2","to":"p_3","candidate":"x"}"#,
        r#"{"type":"ice_candidate","to":"p_2","candidate":{"candidate":"x","sdpMLineIndex":65536}}"#,
        r#"{"type":"ice_candidate","to":"p_2","candidate":"x","extra":1}"#,
        r#"{"type":"ice_candidate","to":"p_2","candidate":"x",}"#,
    ] {
        assert!(crate::relay::decoded_both_ways(t).0.is_none(), "{t}");
    }
}

#[test]
fn every_real_frame_decodes() {
    for v in frames() {
        let t = v.to_string();
        assert_eq!(check(&t), v["type"].as_str(), "{t:.200}");
    }
}

#[test]
fn real_sdps_and_candidates_are_accepted_with_either_line_ending() {
    for sdp in sdps() {
        assert_eq!(validate_sdp(sdp, MAX_SDP), Ok(()), "{sdp:.200}");
        let lf = sdp.replace("\r\n", "\n");
        assert_eq!(validate_sdp(&lf, MAX_SDP), Ok(()), "LF endings");
        assert!(validate_sdp(sdp, sdp.len() - 1).is_err(), "one byte over");
    }
    for c in candidates() {
        assert_eq!(validate_candidate(c), Ok(()), "{c}");
    }
}

#[test]
fn json_that_is_not_an_object_is_refused() {
    for text in ["[]", r#"["ping"]"#, "1", r#""ping""#, "null"] {
        assert_eq!(check(text), None, "{text}");
    }
    let mut m = Map::new();
    m.insert("type".into(), json!("ping"));
    assert_eq!(check(&Value::Object(m).to_string()), Some("ping"));
}

/// The error codes of PROTOCOL.md ("Error codes", plus the HTTP API's
/// `player_not_found`): each is one `ErrorCode` whose wire name, `as_str`
/// (metrics labels, the client's `code()`) and `Display` agree. Found by
/// cargo-mutants: `as_str` and `Display` could be emptied unnoticed here.
#[test]
fn error_codes_have_one_wire_name() {
    let codes = [
        "bad_request",
        "unknown_type",
        "payload_too_large",
        "rate_limited",
        "unauthorized",
        "forbidden",
        "limit_reached",
        "room_not_found",
        "room_full",
        "room_not_waiting",
        "room_not_active",
        "not_in_room",
        "already_in_room",
        "not_host",
        "not_enough_players",
        "peer_not_found",
        "player_not_found",
        "invalid_sdp",
        "invalid_candidate",
        "internal",
    ];
    for name in codes {
        let code = ErrorCode::from_wire(name).unwrap_or_else(|| panic!("{name} is a code"));
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
    }
    assert_eq!(ErrorCode::from_wire("no_such_code"), None);
    let e = decode_request("[]").request.unwrap_err();
    assert_eq!(e.to_string(), format!("bad_request: {}", e.message));
}

/// Timestamps on the wire: RFC 3339, milliseconds, `Z` (the snapshots
/// redact them, so nothing else pins the format).
#[test]
fn timestamps_are_rfc3339_millis_utc() {
    use chrono::{Duration, TimeZone, Utc};
    let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + Duration::milliseconds(678);
    assert_eq!(crate::protocol::ts(&t), "2026-01-02T03:04:05.678Z");
}

/// Any integer rid is echoed, negative or beyond i64 (the fuzzers use
/// `valid_rid` as their oracle, so they cannot see it change). Found by
/// cargo-mutants.
#[test]
fn integer_rids_of_any_sign_and_size_are_echoed() {
    for rid in [json!(-7), json!(i64::MIN), json!(u64::MAX), json!(0)] {
        let d = decode_request(&json!({"type": "ping", "rid": rid}).to_string());
        assert_eq!(d.rid, rid);
    }
}

/// The candidate line that is validated is the one sent, in both forms of
/// the field. Found by cargo-mutants.
#[test]
fn the_candidate_line_is_the_one_sent() {
    use crate::protocol::Request;
    let line = &candidates()[0];
    for field in [json!(line), json!({"candidate": line, "sdpMid": "0"})] {
        let text = json!({"type": "ice_candidate", "to": "p_2", "candidate": field}).to_string();
        match decode_request(&text).request {
            Ok(Request::IceCandidate(sig)) => assert_eq!(sig.candidate.line(), line),
            other => panic!("{other:?}"),
        }
    }
}
