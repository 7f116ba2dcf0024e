//! The signal fast path: `offer`, `answer` and `ice_candidate` are most of a
//! signaling server's traffic, so they skip the general request decoder.
//!
//! One borrowed parse reads the envelope and the fields together (strings
//! borrowed from the frame, the payload kept as raw JSON), the SDP or
//! candidate is checked on that borrowed text, and the relayed event is
//! built by splicing the validated raw payload into a pre-rendered frame:
//! `{"type":"ice_candidate","from":"<id>","candidate":<as sent>}`. No
//! `Value` tree is built and nothing is re-serialized.
//!
//! Anything unusual (a field given twice, a wrong type, a bad `rid`, extra
//! keys inside a candidate object) makes [`decode`] answer `None`, and the
//! frame takes the general path, which gives the precise error or, for the
//! rare valid frame this path does not take, the same relay.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::valid_rid;

/// The three signal types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "ice_candidate",
        }
    }

    fn parse(kind: &str) -> Option<SignalKind> {
        match kind {
            "offer" => Some(SignalKind::Offer),
            "answer" => Some(SignalKind::Answer),
            "ice_candidate" => Some(SignalKind::IceCandidate),
            _ => None,
        }
    }
}

/// What a signal carries, decoded for the checks.
#[derive(Debug)]
pub enum Payload<'a> {
    Sdp(Cow<'a, str>),
    /// The bare-string form (`""` ends the candidates).
    CandidateLine(Cow<'a, str>),
    Candidate(CandidateRef<'a>),
}

/// An `RTCIceCandidateInit` object, borrowed. Unknown keys are refused
/// here (the general path drops them) so that splicing the object as sent
/// never passes on text no check has seen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateRef<'a> {
    #[serde(borrow)]
    pub candidate: Cow<'a, str>,
    #[serde(rename = "sdpMid", borrow, default)]
    pub sdp_mid: Option<Cow<'a, str>>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(rename = "usernameFragment", borrow, default)]
    pub username_fragment: Option<Cow<'a, str>>,
}

/// A signal frame read in one pass.
#[derive(Debug)]
pub struct Signal<'a> {
    pub kind: SignalKind,
    /// `None`: fire-and-forget (no `ok` reply; errors still answered).
    pub rid: Option<Value>,
    pub to: Cow<'a, str>,
    pub payload: Payload<'a>,
    /// The payload's JSON text as sent, spliced into the relayed frame.
    raw: &'a RawValue,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    rid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
}

/// A string JSON value, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// Reads `text` as a well-formed signal; `None` for anything else (other
/// requests, and signals the general path must judge).
pub fn decode(text: &str) -> Option<Signal<'_>> {
    // serde would read an array as the struct's fields in order.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let frame: Frame = serde_json::from_str(text).ok()?;
    let kind = SignalKind::parse(&frame.kind)?;
    let rid = match frame.rid {
        None => None,
        Some(raw) => {
            let rid: Value = serde_json::from_str(raw.get()).ok()?;
            if !valid_rid(&rid) {
                return None;
            }
            Some(rid)
        }
    };
    let to = frame.to?;
    let (raw, payload) = match kind {
        SignalKind::Offer | SignalKind::Answer => {
            let raw = frame.sdp?;
            let Str(sdp) = serde_json::from_str(raw.get()).ok()?;
            (raw, Payload::Sdp(sdp))
        }
        SignalKind::IceCandidate => {
            let raw = frame.candidate?;
            let payload = if raw.get().starts_with('"') {
                let Str(line) = serde_json::from_str(raw.get()).ok()?;
                Payload::CandidateLine(line)
            } else {
                Payload::Candidate(serde_json::from_str(raw.get()).ok()?)
            };
            (raw, payload)
        }
    };
    Some(Signal {
        kind,
        rid,
        to,
        payload,
        raw,
    })
}

impl Signal<'_> {
    /// The event the target receives: `from` stamped (given as JSON
    /// text, rendered once per connection), the payload as sent, `to` and
    /// `rid` left out.
    pub fn event(&self, from_json: &str) -> Utf8Bytes {
        render(self.kind, from_json, self.raw.get())
    }
}

/// `{"type":<kind>,"from":<from_json>,"sdp"|"candidate":<payload_json>}`.
pub fn render(kind: SignalKind, from_json: &str, payload_json: &str) -> Utf8Bytes {
    let (head, key) = match kind {
        SignalKind::Offer => (r#"{"type":"offer","from":"#, r#","sdp":"#),
        SignalKind::Answer => (r#"{"type":"answer","from":"#, r#","sdp":"#),
        SignalKind::IceCandidate => (r#"{"type":"ice_candidate","from":"#, r#","candidate":"#),
    };
    let mut s =
        String::with_capacity(head.len() + from_json.len() + key.len() + payload_json.len() + 1);
    s.push_str(head);
    s.push_str(from_json);
    s.push_str(key);
    s.push_str(payload_json);
    s.push('}');
    Utf8Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_request, Request};

    fn relayed(text: &str) -> Value {
        let sig = decode(text).expect("a signal");
        serde_json::from_str(&sig.event("\"me\"")).unwrap()
    }

    /// What the general path relays for the same frame.
    fn general(text: &str) -> Value {
        let req = decode_request(text).request.unwrap();
        let (_, event) = crate::backend::signal_event("me", req).unwrap();
        serde_json::to_value(&event).unwrap()
    }

    #[test]
    fn relays_what_the_general_path_relays() {
        for text in [
            r#"{"type":"offer","to":"p2","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n","rid":7}"#,
            r#"{"type":"answer","sdp":"v=0\r\n","to":"p2"}"#,
            r#"{"type":"ice_candidate","to":"p2","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#,
            r#"{"type":"ice_candidate","to":"p2","candidate":""}"#,
            r#"{"type":"ice_candidate","to":"p2","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}}"#,
            r#"{"type":"ice_candidate","extra":[1,{"x":2}],"to":"p\u00e9","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}"#,
        ] {
            let got = relayed(text);
            assert_eq!(got, general(text), "{text}");
            assert!(got.get("to").is_none() && got.get("rid").is_none());
            assert_eq!(got["from"], "me");
        }
    }

    #[test]
    fn reads_rid_and_target() {
        let s = decode(r#"{"type":"answer","rid":"a","to":"p\u00e9","sdp":"x"}"#).unwrap();
        assert_eq!(s.kind, SignalKind::Answer);
        assert_eq!(s.rid, Some(Value::from("a")));
        assert_eq!(s.to, "pé");
        let s = decode(r#"{"type":"answer","rid":null,"to":"p","sdp":"x"}"#).unwrap();
        assert_eq!(s.rid, None, "a null rid is no rid");
        assert!(matches!(s.payload, Payload::Sdp(ref x) if x == "x"));
    }

    #[test]
    fn leaves_the_unusual_to_the_general_path() {
        for text in [
            r#"{"type":"find_match"}"#,
            r#"["offer","p","v=0"]"#,
            r#"{"type":"offer","to":"p","sdp":"x","to":"q"}"#,
            r#"{"type":"offer","to":"p"}"#,
            r#"{"type":"offer","sdp":"x"}"#,
            r#"{"type":"offer","to":"p","sdp":5}"#,
            r#"{"type":"offer","to":7,"sdp":"x"}"#,
            r#"{"type":"offer","to":"p","sdp":"x","rid":[1]}"#,
            r#"{"type":"offer","to":"p","sdp":"x","rid":1.5}"#,
            r#"{"type":"ice_candidate","to":"p","candidate":{"candidate":"c","evil":"<script>"}}"#,
            r#"{"type":"ice_candidate","to":"p","candidate":{"sdpMid":"0"}}"#,
            r#"{"type":"ice_candidate","to":"p","candidate":{"candidate":"c","sdpMLineIndex":70000}}"#,
            r#"{"type":"ice_candidate","to":"p","candidate":7}"#,
            r#"{"type":"ice_candidate","to":"p","candidate":"c"} trailing"#,
        ] {
            assert!(decode(text).is_none(), "{text}");
        }
        // The general path relays what it accepts of these without the
        // unknown key.
        let text =
            r#"{"type":"ice_candidate","to":"p","candidate":{"candidate":"c","evil":"<script>"}}"#;
        match decode_request(text).request.unwrap() {
            Request::IceCandidate(_) => {}
            other => panic!("{other:?}"),
        }
        let v = general(text);
        assert!(v["candidate"].get("evil").is_none());
    }
}
