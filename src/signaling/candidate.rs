//! Validation of trickled ICE candidates and their `sdpMid` before relaying.
//!
//! Candidates arrive one at a time, outside any SDP, as the
//! `RTCIceCandidate.candidate` string, and the server forwards them to the
//! other player's `addIceCandidate`. We check them against the `candidate`
//! attribute grammar of RFC 8839 section 5.1 so a hostile client cannot use
//! the relay to deliver arbitrary text, while still accepting everything
//! Chromium and Firefox actually send (mDNS host names, `tcptype`, and
//! vendor extensions such as `generation`, `ufrag`, `network-id` and
//! `network-cost`).

use std::net::Ipv6Addr;

use thiserror::Error;

/// Longest accepted candidate string. Real ones are under 250 bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// Longest accepted `sdpMid`, in characters. Browsers use "0", "1", ...
pub const MAX_SDP_MID_CHARS: usize = 64;

/// How much of a bad field is echoed back in an error message.
const MAX_ECHOED_CHARS: usize = 64;

/// Why a candidate or `sdpMid` was refused. The `Display` text is meant for
/// the client and names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CandidateError {
    #[error("candidate is {len} bytes, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("candidate contains a control character")]
    ControlCharacter,
    #[error("candidate contains a non-ASCII character")]
    NonAscii,
    #[error("candidate must start with \"candidate:\"")]
    MissingPrefix,
    #[error("candidate: missing {0}")]
    Missing(&'static str),
    #[error("candidate: bad {field} \"{value}\"")]
    Bad { field: &'static str, value: String },
    #[error("candidate: extension \"{0}\" has no value")]
    DanglingExtension(String),
    #[error("sdpMid is {len} characters, the limit is {max}")]
    MidTooLong { len: usize, max: usize },
    #[error("sdpMid contains a control character")]
    MidControlCharacter,
}

fn bad(field: &'static str, value: &str) -> CandidateError {
    CandidateError::Bad {
        field,
        value: shown(value),
    }
}

/// A bounded copy of client input for error messages.
fn shown(value: &str) -> String {
    let mut out: String = value.chars().take(MAX_ECHOED_CHARS).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    out
}

/// The bytes of `w` below 0x20, 0x7f or above it.
fn not_plain_ascii(w: u64) -> u64 {
    use super::words::{below, equal, HIGH};
    (w & HIGH) | below(w, 0x20) | equal(w, 0x7f)
}

/// Checks one `RTCIceCandidate.candidate` string.
///
/// The empty string is valid: it is how browsers signal the end of
/// candidates. Otherwise the string must start with `candidate:`; a leading
/// `a=` is tolerated too, because some non-browser WebRTC stacks hand over
/// the whole SDP attribute line, and it is unambiguous to strip. Fields are
/// separated by single or repeated spaces; browsers use single ones.
pub fn validate_candidate(candidate: &str) -> Result<(), CandidateError> {
    if candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(CandidateError::TooLong {
            len: candidate.len(),
            max: MAX_CANDIDATE_BYTES,
        });
    }
    if candidate.is_empty() {
        return Ok(());
    }
    // The grammar is ASCII-only (extension values are VCHARs), and checking
    // bytes up front means no later step can meet a tab, newline, NUL or
    // look-alike Unicode.
    // Eight bytes at a time while no byte is a control or non-ASCII one;
    // the first word with one is looked at byte by byte.
    let bytes = candidate.as_bytes();
    let clean = super::words::skip_unflagged(bytes, 0, not_plain_ascii);
    for &b in &bytes[clean..] {
        if b.is_ascii_control() {
            return Err(CandidateError::ControlCharacter);
        }
        if !b.is_ascii() {
            return Err(CandidateError::NonAscii);
        }
    }

    let body = candidate.strip_prefix("a=").unwrap_or(candidate);
    let body = body
        .strip_prefix("candidate:")
        .ok_or(CandidateError::MissingPrefix)?;
    // Control characters were refused above, so the only ASCII whitespace
    // left is the space; this splitter skips repeated ones byte by byte.
    let mut fields = body.split_ascii_whitespace();
    let mut next = |name: &'static str| fields.next().ok_or(CandidateError::Missing(name));

    let foundation = next("foundation")?;
    if foundation.len() > 32 || !foundation.bytes().all(is_ice_char) {
        return Err(bad("foundation", foundation));
    }

    let component = next("component id")?;
    match parse_digits(component, 5) {
        Some(1..=256) => {}
        _ => return Err(bad("component id", component)),
    }

    // RFC 8839 allows any token as a transport extension; browsers send
    // "udp"/"UDP" and "tcp"/"TCP".
    let transport = next("transport")?;
    if !is_token(transport) {
        return Err(bad("transport", transport));
    }

    let priority = next("priority")?;
    match parse_digits(priority, 10) {
        Some(p) if u32::try_from(p).is_ok() => {}
        _ => return Err(bad("priority", priority)),
    }

    let address = next("connection address")?;
    if !is_connection_address(address) {
        return Err(bad("connection address", address));
    }

    let port = next("port")?;
    if !is_port(port) {
        return Err(bad("port", port));
    }

    let typ = next("\"typ\"")?;
    if typ != "typ" {
        return Err(bad("\"typ\" keyword", typ));
    }
    let cand_type = next("candidate type")?;
    if !matches!(cand_type, "host" | "srflx" | "prflx" | "relay") {
        return Err(bad("candidate type", cand_type));
    }

    // What follows is `name value` pairs: raddr/rport/tcptype have a known
    // value syntax, anything else (generation, ufrag, network-id, ...) only
    // needs a token name and a non-empty value.
    while let Some(name) = fields.next() {
        let Some(value) = fields.next() else {
            return Err(CandidateError::DanglingExtension(shown(name)));
        };
        match name {
            "raddr" if !is_connection_address(value) => return Err(bad("raddr", value)),
            "rport" if !is_port(value) => return Err(bad("rport", value)),
            "tcptype" if !matches!(value, "active" | "passive" | "so") => {
                return Err(bad("tcptype", value))
            }
            _ if !is_token(name) => return Err(bad("extension name", name)),
            // Printable ASCII without spaces was ensured above.
            _ => {}
        }
    }
    Ok(())
}

/// Checks an `RTCIceCandidate.sdpMid`: at most 64 characters, none of them
/// control characters. The empty string is allowed; whether the mid names a
/// real media section is for the receiving browser to decide.
pub fn validate_sdp_mid(mid: &str) -> Result<(), CandidateError> {
    let len = mid.chars().count();
    if len > MAX_SDP_MID_CHARS {
        return Err(CandidateError::MidTooLong {
            len,
            max: MAX_SDP_MID_CHARS,
        });
    }
    if mid.chars().any(char::is_control) {
        return Err(CandidateError::MidControlCharacter);
    }
    Ok(())
}

/// ice-char = ALPHA / DIGIT / "+" / "/"
fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// token from RFC 3261: 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" /
/// "+" / "`" / "'" / "~")
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// Parses 1 to `max_digits` ASCII digits. `str::parse` alone would also
/// accept a leading '+', which the grammar does not.
/// (At most 19 digits, so the value cannot overflow.)
fn parse_digits(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits.min(19) {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn is_port(s: &str) -> bool {
    matches!(parse_digits(s, 5), Some(p) if p <= 65_535)
}

/// IPv4, IPv6, or a DNS name (which covers the random-UUID `.local` mDNS
/// names browsers use to hide local addresses).
fn is_connection_address(s: &str) -> bool {
    is_ipv4(s.as_bytes()) || s.parse::<Ipv6Addr>().is_ok() || is_fqdn(s)
}

/// `s.parse::<Ipv4Addr>().is_ok()`, without the general parser (it runs
/// for every relayed candidate): four decimal octets of at most 255, no
/// leading zero, separated by dots.
fn is_ipv4(s: &[u8]) -> bool {
    let mut octets = 0;
    let mut i = 0;
    loop {
        let start = i;
        let mut value: u32 = 0;
        while let Some(&b @ b'0'..=b'9') = s.get(i) {
            value = value * 10 + u32::from(b - b'0');
            i += 1;
            if i - start > 3 {
                return false;
            }
        }
        let digits = i - start;
        if digits == 0 || value > 255 || (digits > 1 && s[start] == b'0') {
            return false;
        }
        octets += 1;
        if octets == 4 {
            return i == s.len();
        }
        if s.get(i) != Some(&b'.') {
            return false;
        }
        i += 1;
    }
}

/// Host name per RFC 1123: dot-separated labels of letters, digits and
/// hyphens, 1 to 63 characters each, not starting or ending with a hyphen,
/// at most 253 characters overall. The last label may not be all digits, so
/// a malformed IPv4 address such as `256.1.1.1` is not mistaken for a name.
fn is_fqdn(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let last_is_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_is_numeric
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv4_addresses_are_four_octets_without_leading_zeros() {
        for ok in [
            "0.0.0.0",
            "1.2.3.4",
            "192.0.2.1",
            "255.255.255.255",
            "10.0.100.9",
        ] {
            assert!(is_ipv4(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "256.1.1.1",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3.04",
            "1000.1.1.1",
            "0001.1.1.1",
            "1.2.3.4a",
            "a1.2.3.4",
            "1.2.3.4.5",
            "1.2.3.-4",
            "1.2. 3.4",
        ] {
            assert!(!is_ipv4(bad.as_bytes()), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_ipv4_check_agrees_with_std(s in "[0-9.]{0,17}|[0-9]{1,3}(\\.[0-9]{1,4}){3}[.0-9a]{0,2}") {
            prop_assert_eq!(is_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().is_ok(), "{}", s);
        }

        #[test]
        fn parse_digits_agrees_with_str_parse(s in "[0-9+a-]{0,12}", max in 1usize..12) {
            let want = (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten();
            prop_assert_eq!(parse_digits(&s, max), want);
        }
    }

    #[test]
    fn a_word_is_plain_unless_a_byte_is_a_control_or_not_ascii() {
        for base in [b'a', b' ', b'~', 0x80] {
            for at in 0..8 {
                for b in 0..=255u8 {
                    let mut bytes = [base; 8];
                    bytes[at] = b;
                    let plain = bytes.iter().all(|c| c.is_ascii() && !c.is_ascii_control());
                    assert_eq!(
                        not_plain_ascii(u64::from_le_bytes(bytes)) == 0,
                        plain,
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_first_bad_byte_names_the_error_wherever_it_is() {
        let good = "candidate:1 1 udp 2122260223 192.168.1.10 54321 typ host generation 0";
        for at in 0..good.len() {
            let mut control = good.as_bytes().to_vec();
            control[at] = b'\t';
            let control = String::from_utf8(control).unwrap();
            assert_eq!(
                validate_candidate(&control),
                Err(CandidateError::ControlCharacter)
            );
            let del = control.replace('\t', "\u{7f}");
            assert_eq!(
                validate_candidate(&del),
                Err(CandidateError::ControlCharacter)
            );
            let wide = control.replace('\t', "\u{e9}");
            assert_eq!(validate_candidate(&wide), Err(CandidateError::NonAscii));
        }
        assert_eq!(validate_candidate(good), Ok(()));
    }

    const CHROMIUM_CANDIDATES: &str =
        include_str!("../../tests/fixtures/sdp/chromium-candidates.txt");
    const FIREFOX_CANDIDATES: &str =
        include_str!("../../tests/fixtures/sdp/firefox-candidates.txt");

    const SRFLX: &str = "candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx \
                         raddr 192.168.1.2 rport 54321 generation 0 ufrag EsAw network-id 1 \
                         network-cost 10";

    fn captured() -> impl Iterator<Item = &'static str> {
        CHROMIUM_CANDIDATES
            .lines()
            .chain(FIREFOX_CANDIDATES.lines())
            .filter(|l| !l.is_empty())
    }

    #[test]
    fn captured_browser_candidates_pass() {
        let mut count = 0;
        for line in captured() {
            assert_eq!(validate_candidate(line), Ok(()), "{line}");
            count += 1;
        }
        assert!(count >= 10, "expected the fixture files to hold candidates");
    }

    #[test]
    fn captured_candidates_cover_the_interesting_kinds() {
        let all: Vec<&str> = CHROMIUM_CANDIDATES.lines().collect();
        assert!(all.iter().any(|c| c.contains(".local ")), "mDNS host");
        assert!(all.iter().any(|c| c.contains(" typ srflx ")), "srflx");
        assert!(all.iter().any(|c| c.contains(" typ relay ")), "relay");
        assert!(all.iter().any(|c| c.contains(" tcptype ")), "tcp");
        assert!(all.iter().any(|c| c.contains("::")), "IPv6");
    }

    #[test]
    fn brief_example_and_variants_pass() {
        let ok = [
            SRFLX,
            "",
            "candidate:1 1 UDP 2122252543 2001:db8::10 40405 typ host",
            "candidate:3296361195 1 udp 2113937151 d0bb41b9-def1-4566-bb98-320c3cd735c9.local \
             33263 typ host generation 0 ufrag DBXS network-cost 999",
            "candidate:a+b/C 2 udp 1 198.51.100.10 0 typ relay raddr 203.0.113.7 rport 9 \
             generation 0",
            "candidate:2 1 TCP 1518214911 198.51.100.10 9 typ host tcptype active",
            "candidate:2 1 tcp 1518214911 198.51.100.10 9 typ prflx tcptype so",
            "candidate:2 1 tcp 1518214911 turn.example.org 443 typ relay tcptype passive",
            "a=candidate:0 1 UDP 2122187007 fe80::1 45724 typ host",
            "candidate:0  1 UDP 2122187007 10.0.0.1 45724 typ host ",
            "candidate:0 256 udp 4294967295 10.0.0.1 65535 typ host x-vendor-thing some=value",
        ];
        for c in ok {
            assert_eq!(validate_candidate(c), Ok(()), "{c}");
        }
    }

    fn assert_bad(candidate: &str, expected: &str) {
        match validate_candidate(candidate) {
            Ok(()) => panic!("accepted {candidate:?}"),
            Err(e) => assert_eq!(e.to_string(), expected, "{candidate:?}"),
        }
    }

    #[test]
    fn bad_candidates_are_rejected_with_clear_messages() {
        assert_bad(
            "candidate:1 1 udp 2122252543 198.51.100.10 40405",
            "candidate: missing \"typ\"",
        );
        assert_bad(
            "candidate:1 1 udp 2122252543 198.51.100.10 40405 typ",
            "candidate: missing candidate type",
        );
        assert_bad(
            "candidate:1 1 udp 2122252543 198.51.100.10 40405 host",
            "candidate: bad \"typ\" keyword \"host\"",
        );
        assert_bad(
            "candidate:1 1 udp 2122252543 198.51.100.10 40405 typ local",
            "candidate: bad candidate type \"local\"",
        );
        assert_bad(
            "candidate:1 1 udp x 198.51.100.10 40405 typ host",
            "candidate: bad priority \"x\"",
        );
        assert_bad(
            "candidate:1 1 udp 4294967296 198.51.100.10 40405 typ host",
            "candidate: bad priority \"4294967296\"",
        );
        assert_bad(
            "candidate:1 1 udp +5 198.51.100.10 40405 typ host",
            "candidate: bad priority \"+5\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 198.51.100.10 70000 typ host",
            "candidate: bad port \"70000\"",
        );
        assert_bad(
            "candidate:1 0 udp 5 198.51.100.10 7 typ host",
            "candidate: bad component id \"0\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 256.1.1.1 7 typ host",
            "candidate: bad connection address \"256.1.1.1\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 -bad-.local 7 typ host",
            "candidate: bad connection address \"-bad-.local\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 [::1] 7 typ host",
            "candidate: bad connection address \"[::1]\"",
        );
        assert_bad(
            "candidate:1=x 1 udp 5 10.0.0.1 7 typ host",
            "candidate: bad foundation \"1=x\"",
        );
        assert_bad(
            &format!("candidate:{} 1 udp 5 10.0.0.1 7 typ host", "a".repeat(33)),
            &format!("candidate: bad foundation \"{}\"", "a".repeat(33)),
        );
        assert_bad(
            "candidate:1 1 u:dp 5 10.0.0.1 7 typ host",
            "candidate: bad transport \"u:dp\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 10.0.0.1 7 typ relay raddr nope! rport 9",
            "candidate: bad raddr \"nope!\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 10.0.0.1 7 typ relay raddr 10.0.0.2 rport -1",
            "candidate: bad rport \"-1\"",
        );
        assert_bad(
            "candidate:1 1 tcp 5 10.0.0.1 7 typ host tcptype both",
            "candidate: bad tcptype \"both\"",
        );
        assert_bad(
            "candidate:1 1 udp 5 10.0.0.1 7 typ host generation 0 ufrag",
            "candidate: extension \"ufrag\" has no value",
        );
        assert_bad(
            "candidate:1 1 udp 5 10.0.0.1 7 typ host gen(eration) 0",
            "candidate: bad extension name \"gen(eration)\"",
        );
        assert_bad(
            "1 1 udp 5 10.0.0.1 7 typ host",
            "candidate must start with \"candidate:\"",
        );
        assert_bad("candidate:", "candidate: missing foundation");
        assert_bad(" ", "candidate must start with \"candidate:\"");
    }

    #[test]
    fn control_and_non_ascii_characters_are_rejected() {
        for c in ['\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}'] {
            let s = SRFLX.replace(" typ ", &format!(" typ{c}"));
            assert_eq!(
                validate_candidate(&s),
                Err(CandidateError::ControlCharacter),
                "{c:?}"
            );
        }
        let s = format!("{SRFLX}\r\n");
        assert_eq!(
            validate_candidate(&s),
            Err(CandidateError::ControlCharacter)
        );
        let s = SRFLX.replace("srflx", "srf\u{200b}lx");
        assert_eq!(validate_candidate(&s), Err(CandidateError::NonAscii));
    }

    #[test]
    fn over_one_kib_is_rejected() {
        let long = format!("{SRFLX} x-pad {}", "a".repeat(1024));
        assert_eq!(
            validate_candidate(&long),
            Err(CandidateError::TooLong {
                len: long.len(),
                max: MAX_CANDIDATE_BYTES
            })
        );
        // Exactly at the limit is fine.
        let pad = MAX_CANDIDATE_BYTES - SRFLX.len() - " x-pad ".len();
        let exact = format!("{SRFLX} x-pad {}", "a".repeat(pad));
        assert_eq!(exact.len(), MAX_CANDIDATE_BYTES);
        assert_eq!(validate_candidate(&exact), Ok(()));
    }

    #[test]
    fn long_bad_values_are_truncated_in_messages() {
        let s = format!("candidate:1 1 udp {} 10.0.0.1 7 typ host", "9".repeat(500));
        let message = validate_candidate(&s).unwrap_err().to_string();
        assert!(message.len() < 100, "{message}");
        assert!(message.ends_with("…\""), "{message}");
    }

    #[test]
    fn sdp_mid_rules() {
        assert_eq!(validate_sdp_mid("0"), Ok(()));
        assert_eq!(validate_sdp_mid(""), Ok(()));
        assert_eq!(validate_sdp_mid("audio"), Ok(()));
        assert_eq!(validate_sdp_mid(&"é".repeat(64)), Ok(()));
        assert_eq!(
            validate_sdp_mid(&"m".repeat(65)),
            Err(CandidateError::MidTooLong { len: 65, max: 64 })
        );
        assert_eq!(
            validate_sdp_mid("0\n"),
            Err(CandidateError::MidControlCharacter)
        );
        assert_eq!(
            validate_sdp_mid("\u{85}"),
            Err(CandidateError::MidControlCharacter)
        );
        assert_eq!(
            CandidateError::MidTooLong { len: 65, max: 64 }.to_string(),
            "sdpMid is 65 characters, the limit is 64"
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
            let _ = validate_candidate(&s);
            let _ = validate_sdp_mid(&s);
        }

        #[test]
        fn never_panics_on_candidate_like_text(s in "(a=)?candidate:[ -~]{0,200}") {
            let _ = validate_candidate(&s);
        }

        #[test]
        fn never_panics_on_mutated_real_candidates(
            which in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..8),
        ) {
            let real: Vec<&str> = captured().collect();
            let mut chars: Vec<char> = which.get(&real).chars().collect();
            for (at, c, op) in edits {
                if chars.is_empty() {
                    break;
                }
                let i = at.index(chars.len());
                match op {
                    0 => chars[i] = c,
                    1 => chars.insert(i, c),
                    _ => {
                        chars.remove(i);
                    }
                }
            }
            let s: String = chars.into_iter().collect();
            let _ = validate_candidate(&s);
        }
    }
}
