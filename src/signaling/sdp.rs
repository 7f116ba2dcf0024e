//! Validation of SDP offers and answers before they are relayed.
//!
//! The server forwards session descriptions between players verbatim, so a
//! malicious client could otherwise push arbitrarily large or malformed text
//! into another player's browser. We bound the size and run the description
//! through Mozilla's `webrtc-sdp` parser (the one Firefox uses) in lenient
//! mode: attributes it does not know are fine, since browsers keep adding
//! them, but anything it cannot parse is refused with its reason, which the
//! server passes back to the sender.

// Writing into a String cannot fail, so `write!` results are ignored below.
use std::fmt::Write as _;

use thiserror::Error;
use webrtc_sdp::error::SdpParserError;

/// How much client-supplied text (the offending line, or the parser's reason,
/// which can quote the line) is echoed back in an error message: enough to
/// recognise the problem without reflecting kilobytes of hostile input.
const MAX_ECHOED_CHARS: usize = 120;

/// Why an SDP was refused. The `Display` text is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("sdp is {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("sdp is empty")]
    Empty,
    #[error("sdp rejected by parser: {0}")]
    Parse(String),
    #[error("sdp has a bad fingerprint on line {line}: {reason}")]
    BadFingerprint { line: usize, reason: String },
}

/// Checks that `sdp` is at most `max_bytes` long and parses as SDP.
///
/// Both `\r\n` (what browsers send) and bare `\n` line endings are accepted.
pub fn validate_sdp(sdp: &str, max_bytes: usize) -> Result<(), SdpError> {
    // The size cap comes first so the parser never sees oversized input; it
    // also bounds the parser's work, which grows quadratically with the line
    // count (about 40 ms for 32 KiB of tiny lines in a release build).
    if sdp.len() > max_bytes {
        return Err(SdpError::TooLarge {
            len: sdp.len(),
            max: max_bytes,
        });
    }
    if sdp.trim().is_empty() {
        return Err(SdpError::Empty);
    }
    webrtc_sdp::parse_sdp(sdp, false).map_err(|e| SdpError::Parse(describe(&e)))?;
    check_fingerprints(sdp)
}

/// Renders a parser error with 1-based line numbers and bounded, escaped
/// client text (the parser's own `Display` repeats the whole line raw,
/// control characters included).
fn describe(error: &SdpParserError) -> String {
    match error {
        SdpParserError::Line {
            error,
            line,
            line_number,
        }
        | SdpParserError::Unsupported {
            error,
            line,
            line_number,
        } => {
            let mut out = String::new();
            push_escaped_prefix(&mut out, &error.to_string());
            let _ = write!(out, " (line {}: ", line_number.saturating_add(1));
            push_escaped_prefix(&mut out, line);
            out.push(')');
            out
        }
        // Sequence errors mostly carry a placeholder line number of 0, so
        // printing it would mislead. Their message can quote a line too.
        SdpParserError::Sequence { message, .. } => {
            let mut out = String::new();
            push_escaped_prefix(&mut out, message);
            out
        }
    }
}

fn push_escaped_prefix(out: &mut String, text: &str) {
    let mut chars = text.trim().chars();
    for c in chars.by_ref().take(MAX_ECHOED_CHARS) {
        let _ = write!(out, "{}", c.escape_debug());
    }
    if chars.next().is_some() {
        out.push('…');
    }
}

/// Extra check on `a=fingerprint` lines, which carry the DTLS certificate
/// hash that authenticates the peer.
///
/// `webrtc-sdp` already rejects a wrong octet count or non-hex octets for the
/// hash functions it knows, but in lenient mode an *unknown* hash function is
/// only a warning and the line is silently dropped, and its octet parser
/// (`u8::from_str_radix`) lets a sign through, so `+F` passes as an octet.
/// Such a description cannot set up DTLS in any browser, so we refuse it here
/// with a clear reason rather than relay it. Only the fingerprint attribute is
/// checked; everything else is left to the parser.
fn check_fingerprints(sdp: &str) -> Result<(), SdpError> {
    for (index, line) in sdp.lines().enumerate() {
        // Mirror the parser's tokenising: type letter before the first '=',
        // attribute name (case-insensitive) before the first ':'.
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        if !kind.trim().eq_ignore_ascii_case("a") {
            continue;
        }
        let Some((name, value)) = value.trim().split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case("fingerprint") {
            continue;
        }
        check_fingerprint_value(value).map_err(|reason| SdpError::BadFingerprint {
            line: index.saturating_add(1),
            reason,
        })?;
    }
    Ok(())
}

fn check_fingerprint_value(value: &str) -> Result<(), String> {
    let mut tokens = value.split_ascii_whitespace();
    let (Some(hash), Some(octets), None) = (tokens.next(), tokens.next(), tokens.next()) else {
        return Err("expected \"<hash function> <hex octets>\"".to_string());
    };
    // RFC 8122 hash function names; the older md2/md5 are not accepted by
    // any browser.
    let expected_octets = match hash.to_ascii_lowercase().as_str() {
        "sha-1" => 20,
        "sha-224" => 28,
        "sha-256" => 32,
        "sha-384" => 48,
        "sha-512" => 64,
        _ => return Err("unsupported hash function".to_string()),
    };
    let mut count = 0usize;
    for octet in octets.split(':') {
        if octet.len() != 2 || !octet.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("octets must be two hex digits separated by ':'".to_string());
        }
        count += 1;
    }
    if count != expected_octets {
        return Err(format!(
            "{hash} needs {expected_octets} octets, found {count}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 32 * 1024;

    const CHROMIUM_OFFER_DC: &str =
        include_str!("../../tests/fixtures/sdp/chromium-offer-datachannel.sdp");
    const CHROMIUM_ANSWER_DC: &str =
        include_str!("../../tests/fixtures/sdp/chromium-answer-datachannel.sdp");
    const CHROMIUM_OFFER_AV: &str =
        include_str!("../../tests/fixtures/sdp/chromium-offer-av-data.sdp");
    const CHROMIUM_ANSWER_AV: &str =
        include_str!("../../tests/fixtures/sdp/chromium-answer-av-data.sdp");
    const FIREFOX_OFFER_DC: &str =
        include_str!("../../tests/fixtures/sdp/firefox-offer-datachannel.sdp");
    const FIREFOX_ANSWER_DC: &str =
        include_str!("../../tests/fixtures/sdp/firefox-answer-datachannel.sdp");
    const FIREFOX_OFFER_AV: &str =
        include_str!("../../tests/fixtures/sdp/firefox-offer-av-data.sdp");
    const FIREFOX_ANSWER_AV: &str =
        include_str!("../../tests/fixtures/sdp/firefox-answer-av-data.sdp");

    const ALL_FIXTURES: [(&str, &str); 8] = [
        ("chromium-offer-datachannel", CHROMIUM_OFFER_DC),
        ("chromium-answer-datachannel", CHROMIUM_ANSWER_DC),
        ("chromium-offer-av-data", CHROMIUM_OFFER_AV),
        ("chromium-answer-av-data", CHROMIUM_ANSWER_AV),
        ("firefox-offer-datachannel", FIREFOX_OFFER_DC),
        ("firefox-answer-datachannel", FIREFOX_ANSWER_DC),
        ("firefox-offer-av-data", FIREFOX_OFFER_AV),
        ("firefox-answer-av-data", FIREFOX_ANSWER_AV),
    ];

    /// Replaces the first line starting with `prefix` (or drops it when
    /// `replacement` is None), keeping the fixture's `\r\n` endings.
    fn edit_line(sdp: &str, prefix: &str, replacement: Option<&str>) -> String {
        let mut done = false;
        let mut out = String::new();
        for line in sdp.split_inclusive('\n') {
            if !done && line.starts_with(prefix) {
                done = true;
                if let Some(r) = replacement {
                    out.push_str(r);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(line);
            }
        }
        assert!(done, "fixture has no line starting with {prefix:?}");
        out
    }

    #[test]
    fn fixtures_use_crlf_and_are_accepted() {
        for (name, sdp) in ALL_FIXTURES {
            assert!(
                sdp.contains("\r\n"),
                "{name} should keep browser CRLF endings"
            );
            assert_eq!(validate_sdp(sdp, LIMIT), Ok(()), "{name}");
        }
    }

    #[test]
    fn lf_only_line_endings_are_accepted() {
        for (name, sdp) in ALL_FIXTURES {
            let lf = sdp.replace("\r\n", "\n");
            assert_eq!(validate_sdp(&lf, LIMIT), Ok(()), "{name}");
        }
    }

    #[test]
    fn unknown_attributes_are_accepted() {
        let sdp = CHROMIUM_OFFER_DC.replace(
            "a=sctp-port:5000\r\n",
            "a=sctp-port:5000\r\na=x-future-thing:whatever 1 2 3\r\n",
        );
        assert_eq!(validate_sdp(&sdp, LIMIT), Ok(()));
    }

    #[test]
    fn garbage_is_rejected() {
        let err = validate_sdp(
            "hello, this is definitely not a session description at all",
            LIMIT,
        )
        .unwrap_err();
        assert!(matches!(err, SdpError::Parse(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("sdp rejected by parser: "),
            "{err}"
        );
        assert!(matches!(
            validate_sdp("v=0", LIMIT),
            Err(SdpError::Parse(_))
        ));
        assert!(matches!(
            validate_sdp(&"\u{0}\u{1}\u{7f}\u{202e}".repeat(40), LIMIT),
            Err(SdpError::Parse(_))
        ));
    }

    #[test]
    fn missing_timing_line_is_rejected() {
        for (name, sdp) in ALL_FIXTURES {
            let sdp = edit_line(sdp, "t=", None);
            let err = validate_sdp(&sdp, LIMIT).unwrap_err();
            assert_eq!(
                err,
                SdpError::Parse("Missing timing type at session level".to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_fingerprints_are_rejected() {
        let good = "a=fingerprint:sha-256 8E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:\
                    A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D";
        assert_eq!(
            validate_sdp(
                &edit_line(CHROMIUM_OFFER_DC, "a=fingerprint:", Some(good)),
                LIMIT
            ),
            Ok(())
        );

        // Caught by the parser itself.
        let parser_rejects = [
            // one octet short
            "a=fingerprint:sha-256 8E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5",
            // not hex
            "a=fingerprint:sha-256 ZZ:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D",
            // three-digit octet
            "a=fingerprint:sha-256 8E0:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D",
            // sha-256 length given for sha-1
            "a=fingerprint:sha-1 8E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D",
            // hash missing
            "a=fingerprint:sha-256",
        ];
        for line in parser_rejects {
            let err = validate_sdp(
                &edit_line(CHROMIUM_OFFER_DC, "a=fingerprint:", Some(line)),
                LIMIT,
            )
            .unwrap_err();
            assert!(matches!(err, SdpError::Parse(_)), "{line}: {err:?}");
        }

        // Let through by the lenient parser, caught by check_fingerprints.
        let extra_check_rejects = [
            "a=fingerprint:sha-999 8E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D",
            "a=fingerprint:md5 8E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17",
            "a=fingerprint:sha-256 +E:EA:60:31:35:DA:45:E9:40:99:80:26:42:BB:4C:17:A9:10:85:9D:E1:61:44:9E:3C:6B:57:35:F8:A2:D5:6D",
        ];
        for line in extra_check_rejects {
            let sdp = edit_line(FIREFOX_OFFER_DC, "a=fingerprint:", Some(line));
            // Documents why check_fingerprints exists; if a webrtc-sdp
            // upgrade starts rejecting these, the extra check is redundant.
            assert!(webrtc_sdp::parse_sdp(&sdp, false).is_ok(), "{line}");
            let err = validate_sdp(&sdp, LIMIT).unwrap_err();
            assert!(
                matches!(err, SdpError::BadFingerprint { line: 6, .. }),
                "{line}: {err:?}"
            );
        }
    }

    #[test]
    fn oversized_is_rejected_before_parsing() {
        let err = validate_sdp(&"x".repeat(40_000), LIMIT).unwrap_err();
        assert_eq!(
            err,
            SdpError::TooLarge {
                len: 40_000,
                max: LIMIT
            }
        );
        assert_eq!(err.to_string(), "sdp is 40000 bytes, the limit is 32768");
        // The cap is on bytes, inclusive.
        let len = CHROMIUM_OFFER_AV.len();
        assert_eq!(validate_sdp(CHROMIUM_OFFER_AV, len), Ok(()));
        assert_eq!(
            validate_sdp(CHROMIUM_OFFER_AV, len - 1),
            Err(SdpError::TooLarge { len, max: len - 1 })
        );
    }

    #[test]
    fn empty_is_rejected() {
        assert_eq!(validate_sdp("", LIMIT), Err(SdpError::Empty));
        assert_eq!(validate_sdp(" \r\n\r\n", LIMIT), Err(SdpError::Empty));
        assert_eq!(SdpError::Empty.to_string(), "sdp is empty");
    }

    #[test]
    fn parse_errors_echo_a_bounded_escaped_line() {
        let long_bad = format!("b=AS:{}\u{7}", "9".repeat(500));
        let sdp = edit_line(CHROMIUM_OFFER_DC, "a=extmap-allow-mixed", Some(&long_bad));
        let message = validate_sdp(&sdp, LIMIT).unwrap_err().to_string();
        assert!(message.contains("(line 6: b=AS:999"), "{message}");
        assert!(message.ends_with("…)"), "{message}");
        assert!(!message.contains('\u{7}'), "{message}");
        assert!(message.len() < 300, "{message}");

        // The parser's reason can quote the line too; it is bounded as well.
        let email = format!("e={}\u{1b}[2J", "x".repeat(500));
        let sdp = edit_line(CHROMIUM_OFFER_DC, "a=extmap-allow-mixed", Some(&email));
        let message = validate_sdp(&sdp, LIMIT).unwrap_err().to_string();
        assert!(message.contains("unsupported type email: xxx"), "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
        assert!(message.len() < 400, "{message}");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,600}") {
            let _ = validate_sdp(&s, LIMIT);
        }

        #[test]
        fn never_panics_on_sdp_like_lines(lines in proptest::collection::vec(
            "[vostcmab]=[ -~]{0,80}", 0..40)) {
            let _ = validate_sdp(&lines.join("\r\n"), LIMIT);
        }

        #[test]
        fn never_panics_on_mutated_fixtures(
            which in 0..ALL_FIXTURES.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..12),
        ) {
            let mut chars: Vec<char> = ALL_FIXTURES[which].1.chars().collect();
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
            let _ = validate_sdp(&s, LIMIT);
        }
    }
}
