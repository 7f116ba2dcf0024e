//! The signal fast path: `offer`, `answer` and `ice_candidate` are most of a
//! signaling server's traffic, so they skip the general request decoder.
//!
//! One borrowed parse reads the envelope and the fields together (strings
//! borrowed from the frame, the payload kept as raw JSON), the SDP or
//! candidate is checked on that borrowed text, and the relayed event is
//! built by splicing the validated text into a pre-rendered frame:
//! `{"type":"offer","from":"<id>","sdp":<the JSON string as sent>}`, and
//! for candidates the checked strings (copied as is when they had no
//! escapes). No `Value` tree is built and nothing is parsed twice.
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
pub use crate::protocol::SignalKind;

/// A signal request (`offer`, `answer`, `ice_candidate`) as its target and
/// the event the target receives, `from` stamped; `None` for any other.
pub(crate) fn signal_event(
    me: &str,
    request: crate::protocol::Request,
) -> Option<(String, crate::protocol::Event)> {
    let from = me.to_string();
    match request {
        crate::protocol::Request::Offer(sig) => {
            Some((sig.to, crate::protocol::Event::Offer { from, sdp: sig.sdp }))
        }
        crate::protocol::Request::Answer(sig) => Some((
            sig.to,
            crate::protocol::Event::Answer { from, sdp: sig.sdp },
        )),
        crate::protocol::Request::IceCandidate(sig) => Some((
            sig.to,
            crate::protocol::Event::IceCandidate {
                from,
                candidate: sig.candidate,
            },
        )),
        _ => None,
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
    pub sdp_mid: Option<Str<'a>>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(rename = "usernameFragment", borrow, default)]
    pub username_fragment: Option<Str<'a>>,
}

/// A signal frame read in one pass.
#[derive(Debug)]
pub struct Signal<'a> {
    pub kind: SignalKind,
    /// `None`: fire-and-forget (no `ok` reply; errors still answered).
    pub rid: Option<Value>,
    pub to: Cow<'a, str>,
    pub payload: Payload<'a>,
    /// An SDP's JSON string as sent, spliced into the relayed frame.
    raw_sdp: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    rid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to: Option<Str<'a>>,
    #[serde(borrow, default)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    candidate: Option<CandidateArg<'a>>,
}

/// The `candidate` field read in the same pass as the frame: a string, or
/// an `RTCIceCandidateInit` object (unknown keys refused).
enum CandidateArg<'a> {
    Line(Cow<'a, str>),
    Init(CandidateRef<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for CandidateArg<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CandidateArg<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a candidate string or RTCIceCandidateInit object")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CandidateArg::Line(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CandidateArg::Line(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CandidateArg::Line(Cow::Owned(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                CandidateRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CandidateArg::Init)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON string, borrowed when it has no escapes. (serde borrows a
/// `Cow<str>` field only when it is not inside an `Option`, hence the
/// newtype.)
#[derive(Debug, Deserialize)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Reads `text` as a well-formed signal; `None` for anything else (other
/// requests, and signals the general path must judge).
pub fn decode(text: &str) -> Option<Signal<'_>> {
    if let Some(signal) = quick::candidate(text) {
        return Some(signal);
    }
    decode_serde(text)
}

/// [`decode`] through serde: every signal the fast path reads, in any
/// form JSON allows.
fn decode_serde(text: &str) -> Option<Signal<'_>> {
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
    let to = frame.to?.0;
    let (raw_sdp, payload) = match kind {
        SignalKind::Offer | SignalKind::Answer => {
            let raw = frame.sdp?;
            let Str(sdp) = serde_json::from_str(raw.get()).ok()?;
            (Some(raw), Payload::Sdp(sdp))
        }
        SignalKind::IceCandidate => match frame.candidate? {
            CandidateArg::Line(line) => (None, Payload::CandidateLine(line)),
            CandidateArg::Init(init) => (None, Payload::Candidate(init)),
        },
    };
    Some(Signal {
        kind,
        rid,
        to,
        payload,
        raw_sdp,
    })
}

/// The trickle candidate as browsers and the clients send it, read by
/// hand: `ice_candidate` with `to` and `candidate` (a line, or an object of
/// the four known keys), no `rid`, no escapes in any string, each key once.
/// It is most of a signaling server's traffic, and serde's visitor was a
/// quarter of the relay's instructions. Anything else (another type, a
/// `rid`, an escape, an unknown or repeated key, a number that is not a
/// plain `u16`) answers `None` and goes through serde: what this reads, it
/// reads as serde does (a property test compares the two).
mod quick {
    use std::borrow::Cow;

    use super::{CandidateRef, Payload, Signal, SignalKind, Str};

    struct Reader<'a> {
        text: &'a str,
        at: usize,
    }

    /// The bytes of `w` that end or escape a string: `"`, `\\`, below
    /// 0x20 (the lowest flagged is the first; see `signaling::words`).
    fn special_bytes(w: u64) -> u64 {
        use crate::signaling::words::{below, equal};
        equal(w, b'"') | equal(w, b'\\') | below(w, 0x20)
    }

    impl<'a> Reader<'a> {
        fn peek(&mut self) -> Option<u8> {
            let bytes = self.text.as_bytes();
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
                self.at += 1;
            }
            bytes.get(self.at).copied()
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// A string with no escape, borrowed.
        fn string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let start = self.at;
            let bytes = self.text.as_bytes();
            // Eight bytes at a time up to the first byte that ends or
            // escapes the string; the last few byte by byte.
            self.at = crate::signaling::words::skip_unflagged(bytes, self.at, special_bytes);
            while let Some(&b) = bytes.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            if *bytes.get(self.at)? != b'"' {
                return None;
            }
            // Both ends are at a `"`: character boundaries.
            let s = self.text.get(start..self.at)?;
            self.at += 1;
            Some(s)
        }

        fn null(&mut self) -> bool {
            let is_null = self.peek() == Some(b'n') && self.text[self.at..].starts_with("null");
            if is_null {
                self.at += 4;
            }
            is_null
        }

        /// A JSON integer that fits a `u16`, as plain digits.
        fn u16(&mut self) -> Option<u16> {
            self.peek()?;
            let start = self.at;
            let bytes = self.text.as_bytes();
            while let Some(b'0'..=b'9') = bytes.get(self.at) {
                self.at += 1;
            }
            let digits = &self.text[start..self.at];
            if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
                return None;
            }
            if let Some(b'.' | b'e' | b'E') = bytes.get(self.at) {
                return None;
            }
            digits.parse().ok()
        }

        /// `"key":`, then the value is the caller's.
        fn key(&mut self) -> Option<&'a str> {
            // The keys of a trickle candidate, as clients write them: one
            // comparison each instead of a scan for the string's end.
            const USUAL: [&str; 7] = [
                "type",
                "to",
                "candidate",
                "sdpMid",
                "sdpMLineIndex",
                "usernameFragment",
                "rid",
            ];
            self.peek()?;
            let rest = &self.text.as_bytes()[self.at..];
            for key in USUAL {
                let n = key.len();
                if rest.len() > n + 2
                    && rest[0] == b'"'
                    && &rest[1..=n] == key.as_bytes()
                    && rest[n + 1..n + 3] == *b"\":"
                {
                    self.at += n + 3;
                    return Some(key);
                }
            }
            let key = self.string()?;
            self.eat(b':')?;
            Some(key)
        }

        /// After a member: `true` when the object goes on (`,`), `false`
        /// at its `}`.
        fn more(&mut self) -> Option<bool> {
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    Some(true)
                }
                b'}' => {
                    self.at += 1;
                    Some(false)
                }
                _ => None,
            }
        }

        fn opt_string(&mut self) -> Option<Option<Str<'a>>> {
            if self.null() {
                return Some(None);
            }
            Some(Some(Str(Cow::Borrowed(self.string()?))))
        }

        fn candidate_object(&mut self) -> Option<CandidateRef<'a>> {
            self.eat(b'{')?;
            let (mut candidate, mut mid, mut index, mut ufrag) = (None, None, None, None);
            loop {
                match self.key()? {
                    "candidate" if candidate.is_none() => candidate = Some(self.string()?),
                    "sdpMid" if mid.is_none() => mid = Some(self.opt_string()?),
                    "sdpMLineIndex" if index.is_none() => {
                        index = Some(if self.null() { None } else { Some(self.u16()?) })
                    }
                    "usernameFragment" if ufrag.is_none() => ufrag = Some(self.opt_string()?),
                    _ => return None,
                }
                if !self.more()? {
                    break;
                }
            }
            Some(CandidateRef {
                candidate: Cow::Borrowed(candidate?),
                sdp_mid: mid.flatten(),
                sdp_m_line_index: index.flatten(),
                username_fragment: ufrag.flatten(),
            })
        }
    }

    pub(super) fn candidate(text: &str) -> Option<Signal<'_>> {
        let mut r = Reader { text, at: 0 };
        r.eat(b'{')?;
        let (mut kind, mut to, mut payload) = (None, None, None);
        loop {
            match r.key()? {
                "type" if kind.is_none() => kind = Some(r.string()?),
                "to" if to.is_none() => to = Some(r.string()?),
                "candidate" if payload.is_none() => {
                    payload = Some(if r.peek()? == b'{' {
                        Payload::Candidate(r.candidate_object()?)
                    } else {
                        Payload::CandidateLine(Cow::Borrowed(r.string()?))
                    })
                }
                _ => return None,
            }
            if !r.more()? {
                break;
            }
        }
        if r.peek().is_some() || kind? != "ice_candidate" {
            return None;
        }
        Some(Signal {
            kind: SignalKind::IceCandidate,
            rid: None,
            to: Cow::Borrowed(to?),
            payload: payload?,
            raw_sdp: None,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::special_bytes;

        /// Where the first special byte of `bytes` is, by the word test.
        fn first(bytes: [u8; 8]) -> Option<usize> {
            let m = special_bytes(u64::from_le_bytes(bytes));
            (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
        }

        #[test]
        fn the_word_test_finds_the_first_byte_that_ends_or_escapes_a_string() {
            let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
            for base in [b'a', 0x7f, 0x80, 0xff, b' '] {
                for at in 0..8 {
                    for b in 0..=255u8 {
                        let mut bytes = [base; 8];
                        bytes[at] = b;
                        assert_eq!(first(bytes), special(b).then_some(at), "{bytes:?}");
                        // A second match after it does not move it.
                        for later in at + 1..8 {
                            let mut two = bytes;
                            two[later] = b'"';
                            let want = if special(b) { at } else { later };
                            assert_eq!(first(two), Some(want), "{two:?}");
                        }
                    }
                }
            }
            // Matches whose borrows spill upward: the lowest is still first.
            assert_eq!(first(*b"\x00\x01abcdef"), Some(0));
            assert_eq!(first(*b"ab\x00\"\x1f\\ef"), Some(2));
            assert_eq!(first(*b"candidat"), None);
        }
    }
}

/// What the hand-written reader and serde make of `text`, each as its
/// signal's fields and relayed frame: the reader's answer, when it has
/// one, must be serde's.
#[cfg(test)]
pub(crate) fn decoded_both_ways(text: &str) -> (Option<String>, Option<String>) {
    let show = |s: Signal<'_>| format!("{s:?} => {}", s.event("\"me\""));
    (
        quick::candidate(text).map(show),
        decode_serde(text).map(show),
    )
}

/// How every `message` event (1.2) starts: in cluster mode the target's
/// node tells a relayed message from a signal by it.
pub const MESSAGE_PREFIX: &str = r#"{"type":"message","#;

/// The `message` event of a `send` (1.2): `from` stamped (as JSON text),
/// `data` spliced in as sent.
pub fn message_frame(from_json: &str, data: &RawValue) -> Utf8Bytes {
    let data = data.get();
    let mut out = String::with_capacity(MESSAGE_PREFIX.len() + from_json.len() + data.len() + 16);
    out.push_str(MESSAGE_PREFIX);
    out.push_str(r#""from":"#);
    out.push_str(from_json);
    out.push_str(r#","data":"#);
    out.push_str(data);
    out.push('}');
    Utf8Bytes::from(out)
}

impl Signal<'_> {
    /// The event the target receives: `from` stamped (given as JSON
    /// text, rendered once per connection), the payload as sent, `to` and
    /// `rid` left out.
    pub fn event(&self, from_json: &str) -> Utf8Bytes {
        let mut out = String::with_capacity(self.event_len(from_json));
        out.push_str(r#"{"type":""#);
        out.push_str(self.kind.as_str());
        out.push_str(r#"","from":"#);
        out.push_str(from_json);
        match (&self.payload, self.raw_sdp) {
            (_, Some(raw)) => {
                out.push_str(r#","sdp":"#);
                out.push_str(raw.get());
            }
            (Payload::Sdp(sdp), None) => {
                out.push_str(r#","sdp":"#);
                push_str(&mut out, sdp);
            }
            (Payload::CandidateLine(line), None) => {
                out.push_str(r#","candidate":"#);
                push_str(&mut out, line);
            }
            (Payload::Candidate(c), None) => {
                // The general path's shape: all four keys, null when absent.
                out.push_str(r#","candidate":{"candidate":"#);
                push_str(&mut out, &c.candidate);
                out.push_str(r#","sdpMid":"#);
                push_opt_str(&mut out, c.sdp_mid.as_ref().map(|m| &m.0));
                out.push_str(r#","sdpMLineIndex":"#);
                match c.sdp_m_line_index {
                    Some(i) => push_decimal(&mut out, u64::from(i)),
                    None => out.push_str("null"),
                }
                out.push_str(r#","usernameFragment":"#);
                push_opt_str(&mut out, c.username_fragment.as_ref().map(|u| &u.0));
                out.push('}');
            }
        }
        out.push('}');
        Utf8Bytes::from(out)
    }

    /// The relayed event's length, exactly: its buffer is allocated once
    /// and never grown, nor larger than needed.
    fn event_len(&self, from_json: &str) -> usize {
        // `{"type":"`, the type, `","from":`, ..., `}`.
        let envelope = 9 + self.kind.as_str().len() + 9 + 1;
        let payload = match (&self.payload, self.raw_sdp) {
            // `,"sdp":` and the JSON text as sent.
            (_, Some(raw)) => 7 + raw.get().len(),
            (Payload::Sdp(s), None) => 7 + str_len(s),
            // `,"candidate":` and the line.
            (Payload::CandidateLine(s), None) => 13 + str_len(s),
            (Payload::Candidate(c), None) => {
                // `,"candidate":{"candidate":`, `,"sdpMid":`,
                // `,"sdpMLineIndex":`, `,"usernameFragment":`, `}`.
                const KEYS: usize = 26 + 10 + 17 + 20 + 1;
                let index = c.sdp_m_line_index.map_or(4, |i| decimal_len(u64::from(i)));
                KEYS + str_len(&c.candidate)
                    + opt_str_len(c.sdp_mid.as_ref().map(|m| &m.0))
                    + index
                    + opt_str_len(c.username_fragment.as_ref().map(|u| &u.0))
            }
        };
        envelope + from_json.len() + payload
    }
}

/// The length of what [`push_str`] writes for `s`.
// The `Cow` itself is the point: borrowed text is copied as is, owned text
// is escaped again.
#[allow(clippy::ptr_arg)]
fn str_len(s: &Cow<'_, str>) -> usize {
    match s {
        Cow::Borrowed(b) => b.len() + 2,
        // As serde_json escapes: the two-character escapes, `\u00XX` for
        // the other control characters, everything else as is.
        Cow::Owned(o) => {
            2 + o
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0..=0x1f => 6,
                    _ => 1,
                })
                .sum::<usize>()
        }
    }
}

/// The length of what [`push_opt_str`] writes for `s`.
fn opt_str_len(s: Option<&Cow<'_, str>>) -> usize {
    s.map_or(4, str_len)
}

/// The number of decimal digits of `n`.
fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A JSON string. Text borrowed from the frame had no escapes, so it holds
/// no `"`, `\\` or control character and is copied as is; text that was
/// unescaped is escaped again by serde_json.
#[allow(clippy::ptr_arg)] // the variant is the point: Borrowed text had no escapes
fn push_str(out: &mut String, s: &Cow<'_, str>) {
    match s {
        Cow::Borrowed(b) => {
            out.push('"');
            out.push_str(b);
            out.push('"');
        }
        Cow::Owned(o) => out.push_str(&serde_json::to_string(o).unwrap_or_default()),
    }
}

fn push_opt_str(out: &mut String, s: Option<&Cow<'_, str>>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// A number as decimal text, without going through `fmt` (it runs for
/// every relayed candidate here and every field of every batched signal in
/// cluster mode).
pub(crate) fn push_decimal(out: &mut String, mut n: u64) {
    if n < 10 {
        // The usual `sdpMLineIndex`.
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_request, Request};

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 9, 10, 99, 100, 1234, 65_535, 1 << 20, u64::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn the_relayed_event_is_exactly_the_room_reserved_for_it() {
        let offer = serde_json::to_string(include_str!(
            "../tests/fixtures/sdp/chromium-offer-datachannel.sdp"
        ))
        .unwrap();
        let line = "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host";
        let texts = [
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"{line}","sdpMid":"0","sdpMLineIndex":65535,"usernameFragment":"abcd"}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"{line}"}}}}"#),
            format!(
                r#"{{"type":"ice_candidate","to":"p","rid":1,"candidate":{{"candidate":"{line}","sdpMid":null}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":"{line}"}}"#),
            format!(r#"{{"type":"offer","to":"p","sdp":{offer}}}"#),
            format!(r#"{{"type":"answer","to":"p","rid":"x","sdp":{offer}}}"#),
            // Escaped text, unescaped when read and escaped again.
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"{line}\u0041\/","sdpMid":"a\"b\\c\n\u0001","sdpMLineIndex":12,"usernameFragment":null}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":"{line}\t\u001f"}}"#),
            r#"{"to":"p","type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"}"#.to_string(),
        ];
        for text in &texts {
            let sig = decode(text).unwrap_or_else(|| panic!("{text}"));
            for from in [r#""""#, r#""a-much-longer-player-id-of-forty-bytes-x""#] {
                let event = sig.event(from);
                assert_eq!(event.len(), sig.event_len(from), "{event}");
            }
        }
    }

    fn relayed(text: &str) -> Value {
        let sig = decode(text).expect("a signal");
        serde_json::from_str(&sig.event("\"me\"")).unwrap()
    }

    /// What the general path relays for the same frame.
    fn general(text: &str) -> Value {
        let req = decode_request(text).request.unwrap();
        let (_, event) = super::signal_event("me", req).unwrap();
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
    fn plain_strings_are_borrowed_from_the_frame() {
        let text = r#"{"type":"ice_candidate","to":"p2","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","usernameFragment":"u"}}"#;
        let s = decode(text).unwrap();
        assert!(matches!(s.to, Cow::Borrowed(_)));
        let Payload::Candidate(c) = &s.payload else {
            panic!("{:?}", s.payload)
        };
        assert!(matches!(c.candidate, Cow::Borrowed(_)));
        assert!(matches!(c.sdp_mid.as_ref().unwrap().0, Cow::Borrowed(_)));
        assert!(matches!(
            c.username_fragment.as_ref().unwrap().0,
            Cow::Borrowed(_)
        ));
        // Escaped text is unescaped for the checks and escaped again.
        let s = decode(r#"{"type":"ice_candidate","to":"p\"2","candidate":"a\\b"}"#).unwrap();
        assert_eq!(s.to, "p\"2");
        let v: Value = serde_json::from_str(&s.event("\"me\"")).unwrap();
        assert_eq!(v["candidate"], "a\\b");
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

    /// Keys compared whole by the quick reader, and near misses of them
    /// (a longer key, a space before the colon, an escape), read exactly as
    /// the general path reads them.
    #[test]
    fn usual_keys_and_near_misses_read_as_serde_reads_them() {
        let line = r#""candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ host""#;
        for text in [
            format!(r#"{{"type":"ice_candidate","to":"p",{line}}}"#),
            format!(r#"{{"type" :"ice_candidate","to":"p",{line}}}"#),
            format!(r#"{{ "type": "ice_candidate", "to" : "p", {line} }}"#),
            format!(r#"{{"type":"ice_candidate","tox":"p",{line}}}"#),
            format!(r#"{{"typ":"ice_candidate","to":"p",{line}}}"#),
            format!(r#"{{"t\u0079pe":"ice_candidate","to":"p",{line}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","rid":1,{line}}}"#),
            r#"{"type":"ice_candidate","to":"p","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndexx":1}}"#
                .to_string(),
        ] {
            let (quick, serde) = decoded_both_ways(&text);
            if quick.is_some() {
                assert_eq!(quick, serde, "{text}");
            }
        }
        let (quick, serde) =
            decoded_both_ways(&format!(r#"{{"type":"ice_candidate","to":"p",{line}}}"#));
        assert!(quick.is_some(), "the usual frame takes the quick path");
        assert_eq!(quick, serde);
    }

    /// Issue 35, point 5: what the hand-written reader does with cut and
    /// odd input. Whatever `decode` makes of a frame must be what the
    /// general path makes of it: the quick reader's answer, when it has
    /// one, is serde's; a signal `decode` reads is one the general path
    /// accepts, with the same target and the same relayed event. When
    /// `decode` answers `None` the session hands the frame to the general
    /// path (`Session::on_request`), so a refusal is always the general
    /// path's, with its error code: what is checked then is that nothing
    /// panicked and that the reader did not accept what serde refuses.
    fn agrees(text: &str) {
        let (quick, serde) = decoded_both_ways(text);
        if quick.is_some() {
            assert_eq!(
                quick, serde,
                "the quick reader and serde differ on {text:?}"
            );
        }
        let general = decode_request(text);
        if let Some(sig) = decode(text) {
            let req = general.request.unwrap_or_else(|e| {
                panic!("relayed {text:?}, which the general path refuses: {e:?}")
            });
            let (to, event) = super::signal_event("me", req)
                .unwrap_or_else(|| panic!("relayed {text:?}, not a signal for the general path"));
            assert_eq!(sig.to, to, "{text:?}");
            let relayed: Value = serde_json::from_str(&sig.event("\"me\"")).unwrap();
            assert_eq!(relayed, serde_json::to_value(&event).unwrap(), "{text:?}");
        }
    }

    /// The signal frames of the fixtures: every SDP as an offer or answer,
    /// every candidate line as a line and as an `RTCIceCandidateInit`, in
    /// the usual compact form and spaced out, with and without `rid`.
    fn fixture_frames() -> &'static [String] {
        static FRAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        FRAMES.get_or_init(make_fixture_frames)
    }

    fn make_fixture_frames() -> Vec<String> {
        let sdps = [
            (
                "offer",
                include_str!("../tests/fixtures/sdp/chromium-offer-datachannel.sdp"),
            ),
            (
                "offer",
                include_str!("../tests/fixtures/sdp/chromium-offer-av-data.sdp"),
            ),
            (
                "offer",
                include_str!("../tests/fixtures/sdp/firefox-offer-datachannel.sdp"),
            ),
            (
                "offer",
                include_str!("../tests/fixtures/sdp/firefox-offer-av-data.sdp"),
            ),
            (
                "answer",
                include_str!("../tests/fixtures/sdp/chromium-answer-datachannel.sdp"),
            ),
            (
                "answer",
                include_str!("../tests/fixtures/sdp/chromium-answer-av-data.sdp"),
            ),
            (
                "answer",
                include_str!("../tests/fixtures/sdp/firefox-answer-datachannel.sdp"),
            ),
            (
                "answer",
                include_str!("../tests/fixtures/sdp/firefox-answer-av-data.sdp"),
            ),
        ];
        let mut frames = Vec::new();
        for (kind, sdp) in sdps {
            let sdp = serde_json::to_string(sdp).unwrap();
            frames.push(format!(r#"{{"type":"{kind}","to":"p_2","sdp":{sdp}}}"#));
            frames.push(format!(
                r#"{{"type":"{kind}","rid":7,"to":"p_2","sdp":{sdp}}}"#
            ));
        }
        let lines = include_str!("../tests/fixtures/sdp/chromium-candidates.txt")
            .lines()
            .chain(include_str!("../tests/fixtures/sdp/firefox-candidates.txt").lines())
            .map(str::trim)
            .filter(|l| l.starts_with("candidate:"));
        for (i, line) in lines.enumerate() {
            frames.push(format!(
                r#"{{"type":"ice_candidate","to":"p_2","candidate":"{line}"}}"#
            ));
            frames.push(format!(
                r#"{{"type":"ice_candidate","to":"p_2","candidate":{{"candidate":"{line}","sdpMid":"{i}","sdpMLineIndex":{i},"usernameFragment":"Uqnz"}}}}"#
            ));
            frames.push(format!(
                r#" {{ "type" : "ice_candidate" , "to" : "p_2" , "candidate" : {{ "candidate" : "{line}" , "sdpMid" : null , "sdpMLineIndex" : null , "usernameFragment" : null }} }} "#
            ));
            frames.push(format!(
                r#"{{"type":"ice_candidate","rid":"r{i}","to":"p_2","candidate":{{"candidate":"{line}","sdpMLineIndex":65535}}}}"#
            ));
        }
        frames
    }

    /// Every prefix of every fixture frame (the frame cut anywhere, as a
    /// client that died mid-write or a fuzzer would send it).
    #[test]
    fn every_prefix_of_every_fixture_frame_agrees_with_the_general_path() {
        let frames = fixture_frames();
        assert!(frames.len() > 100, "{} frames", frames.len());
        for frame in frames {
            // The whole frame is read, by the quick reader when it is a
            // compact candidate without `rid`.
            agrees(frame);
            assert!(decode(frame).is_some(), "{frame}");
            let end = frame.trim_end().len();
            for cut in (0..frame.len()).filter(|&i| frame.is_char_boundary(i)) {
                let text = &frame[..cut];
                agrees(text);
                if cut < end {
                    // Cut before the closing brace: not JSON, both refuse.
                    assert!(decode(text).is_none(), "read a cut frame: {text:?}");
                    assert!(decode_request(text).request.is_err(), "{text:?}");
                }
            }
        }
    }

    /// Null where a string, number or object goes; a near `null`.
    #[test]
    fn nulls_read_as_serde_reads_them() {
        let c = r#""candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ host""#;
        for text in [
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":null}}}}"#),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMLineIndex":null}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"usernameFragment":null}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":nul}}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":nulll}}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":null"}}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":nullx}}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":Null}}}}"#),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMLineIndex":nu}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":n"#),
            r#"{"type":"ice_candidate","to":"p","candidate":{"candidate":null}}"#.to_string(),
            r#"{"type":"ice_candidate","to":"p","candidate":null}"#.to_string(),
            r#"{"type":"ice_candidate","to":null,"candidate":"c"}"#.to_string(),
            r#"{"type":null,"to":"p","candidate":"c"}"#.to_string(),
            r#"{"type":"ice_candidate","to":"p","candidate":"c","rid":null}"#.to_string(),
        ] {
            agrees(&text);
        }
        // What the reader takes, it takes as serde does.
        let text = format!(
            r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}}}}"#
        );
        let (quick, serde) = decoded_both_ways(&text);
        assert!(quick.is_some(), "nulls take the quick path");
        assert_eq!(quick, serde);
        for bad in ["nul", "nulll", "nullx", "Null", "nulx", "nul,"] {
            for text in [
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":{bad}}}}}"#
                ),
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMid":{bad},"usernameFragment":"u"}}}}"#
                ),
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{{c},"sdpMLineIndex":{bad},"sdpMid":"0"}}}}"#
                ),
            ] {
                agrees(&text);
                assert!(decode(&text).is_none(), "{text}");
            }
        }
    }

    /// `sdpMLineIndex` is a `u16`: its bounds, and what is not a plain
    /// integer.
    #[test]
    fn sdp_m_line_index_is_a_u16_like_serde_reads_it() {
        let frame = |n: &str| {
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"c","sdpMLineIndex":{n}}}}}"#
            )
        };
        for (n, read) in [
            ("0", Some(0)),
            ("9", Some(9)),
            ("10", Some(10)),
            ("65535", Some(65535)),
            ("65536", None),
            ("65540", None),
            ("99999", None),
            ("655350", None),
            ("18446744073709551616", None),
            ("00", None),
            ("01", None),
            ("-1", None),
            ("-0", None),
            ("1.0", None),
            ("1e2", None),
            ("1E2", None),
            ("+1", None),
            ("\"1\"", None),
            ("", None),
        ] {
            let text = frame(n);
            agrees(&text);
            let got = decode(&text).map(|s| match s.payload {
                Payload::Candidate(c) => c.sdp_m_line_index,
                other => panic!("{other:?}"),
            });
            assert_eq!(got, read.map(Some), "{text}");
            // The quick reader's own answer, whatever serde would make of it.
            assert_eq!(quick::candidate(&text).is_some(), read.is_some(), "{text}");
        }
    }

    /// Keys written with escapes are left to serde, which reads them
    /// unescaped; a key given twice is refused by both readers.
    #[test]
    fn escaped_and_repeated_keys_read_as_serde_reads_them() {
        let l = r#""candidate:1 1 udp 1 192.0.2.1 5000 typ host""#;
        for text in [
            format!(r#"{{"type":"ice_candidate","t\u006f":"p","candidate":{l}}}"#),
            format!(r#"{{"\u0074ype":"ice_candidate","to":"p","candidate":{l}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candid\u0061te":{l}}}"#),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candid\u0061te":{l},"sdpMid":"0"}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"sdp\u004did":"0"}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"sdpMLine\u0049ndex":0}}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p\u0032","candidate":{l}}}"#),
            r#"{"type":"ice_candidate","to":"p","candidate":"a\"b"}"#.to_string(),
        ] {
            agrees(&text);
            assert!(
                quick::candidate(&text).is_none(),
                "an escape is serde's to read: {text}"
            );
            assert!(decode(&text).is_some(), "serde reads it: {text}");
        }
        for text in [
            format!(
                r#"{{"type":"ice_candidate","type":"ice_candidate","to":"p","candidate":{l}}}"#
            ),
            format!(r#"{{"type":"ice_candidate","to":"p","to":"q","candidate":{l}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","candidate":{l},"candidate":{l}}}"#),
            format!(r#"{{"type":"ice_candidate","to":"p","t\u006f":"q","candidate":{l}}}"#),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"candidate":{l}}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"sdpMid":"0","sdpMid":"1"}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"sdpMLineIndex":0,"sdpMLineIndex":1}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"usernameFragment":"a","usernameFragment":null}}}}"#
            ),
            format!(
                r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":{l},"sdpMid":null,"sdpMid":null}}}}"#
            ),
        ] {
            agrees(&text);
            assert!(decode(&text).is_none(), "a repeated key is refused: {text}");
        }
    }

    /// A raw control character ends no string (JSON wants it escaped):
    /// the reader must not take it for the closing quote.
    #[test]
    fn a_raw_control_character_ends_no_string() {
        for ch in ['\u{0}', '\u{1}', '\t', '\n', '\r', '\u{1f}'] {
            for text in [
                format!(r#"{{"type":"ice_candidate","to":"p{ch},"candidate":"c"}}"#),
                format!(r#"{{"type":"ice_candidate","to":"p","candidate":"c{ch}}}"#),
                format!(r#"{{"type":"ice_candidate{ch},"to":"p","candidate":"c"}}"#),
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"c{ch},"sdpMid":"0"}}}}"#
                ),
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"c","sdpMid":"0{ch}}}}}"#
                ),
                format!(
                    r#"{{"type":"ice_candidate","to":"p","candidate":{{"candidate":"c","usernameFragment":"u{ch},"sdpMid":"0"}}}}"#
                ),
                format!(r#"{{"type":"ice_candidate","to{ch}:"p","candidate":"c"}}"#),
                format!(r#"{{"type":"ice_candidate","to":"p","x{ch}:1,"candidate":"c"}}"#),
            ] {
                agrees(&text);
                assert!(decode(&text).is_none(), "{text:?}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A fixture frame with a piece cut out of it anywhere, cut short,
        /// or with an ASCII byte put in: nothing panics and every reading
        /// agrees.
        #[test]
        fn a_frame_with_a_piece_cut_out_agrees(
            which in 0usize..10_000,
            a in 0usize..10_000,
            b in 0usize..10_000,
            short in proptest::bool::ANY,
            insert in proptest::option::of(0u8..0x80),
        ) {
            let frames = fixture_frames();
            let frame = &frames[which % frames.len()];
            let (mut a, mut b) = (a % (frame.len() + 1), b % (frame.len() + 1));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            while !frame.is_char_boundary(a) { a -= 1; }
            while !frame.is_char_boundary(b) { b -= 1; }
            let text = match (insert, short) {
                // A byte (a control character, a quote, a backslash...)
                // put in at `a`.
                (Some(byte), _) => format!("{}{}{}", &frame[..a], char::from(byte), &frame[a..]),
                (None, true) => frame[..b].to_string(),
                (None, false) => format!("{}{}", &frame[..a], &frame[b..]),
            };
            agrees(&text);
        }
    }
}
