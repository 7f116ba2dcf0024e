//! Text eight bytes at a time: masks over a little-endian `u64` word of
//! bytes, with the high bit of each byte that matches set. The word as a
//! whole is flagged exactly when one of its bytes matches, and the lowest
//! bit set is always a real match, so `trailing_zeros() / 8` is the first
//! matching byte (the borrow of the subtraction only spills upward, past a
//! byte that is itself a match, so higher bits may be false leads).
//! The hand-written signal reader and the candidate check use them.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// The high bit of every byte: by itself, the mask of non-ASCII bytes.
pub(crate) const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Where the first byte at or after `from` that `flags` marks is, eight
/// bytes at a time; past the last whole word, the start of the shorter
/// rest (for the caller to look at byte by byte).
pub(crate) fn skip_unflagged(bytes: &[u8], mut from: usize, flags: impl Fn(u64) -> u64) -> usize {
    while let Some(word) = bytes.get(from..from + 8) {
        let flagged = flags(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        if flagged != 0 {
            return from + (flagged.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    from
}

/// The bytes of `w` equal to `b`.
pub(crate) fn equal(w: u64, b: u8) -> u64 {
    let v = w ^ (ONES * u64::from(b));
    v.wrapping_sub(ONES) & !v & HIGH
}

/// The bytes of `w` below `n` (`n` at most 0x80).
pub(crate) fn below(w: u64, n: u8) -> u64 {
    debug_assert!(n <= 0x80);
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skip stops at the first flagged byte, or at the start of the
    /// last stretch shorter than a word, from any start.
    #[test]
    fn skip_stops_at_the_first_flagged_byte_or_the_short_rest() {
        for len in 0..30 {
            for quote in (0..len).map(Some).chain([None]) {
                let mut bytes = vec![b'a'; len];
                if let Some(q) = quote {
                    bytes[q] = b'"';
                }
                for from in 0..=len {
                    let got = skip_unflagged(&bytes, from, |w| equal(w, b'"'));
                    let whole_words_end = from + (len - from) / 8 * 8;
                    let want = match quote {
                        Some(q) if q >= from && q < whole_words_end => q,
                        _ => whole_words_end,
                    };
                    assert_eq!(got, want, "len {len} quote {quote:?} from {from}");
                }
            }
        }
    }

    /// The first byte flagged in `m`.
    fn first(m: u64) -> Option<usize> {
        (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
    }

    #[test]
    fn the_lowest_flag_is_the_first_match_and_a_word_is_flagged_exactly_when_one_matches() {
        for base in [b'a', b' ', 0x7f, 0x80, 0xff] {
            for at in 0..8 {
                for b in 0..=255u8 {
                    let mut bytes = [base; 8];
                    bytes[at] = b;
                    let w = u64::from_le_bytes(bytes);
                    for target in [b'"', b'\\', 0x7f] {
                        let want = bytes.iter().position(|&c| c == target);
                        assert_eq!(first(equal(w, target)), want, "{bytes:?} == {target}");
                    }
                    for n in [0x20, 0x80] {
                        let want = bytes.iter().position(|&c| c < n);
                        assert_eq!(first(below(w, n)), want, "{bytes:?} < {n}");
                    }
                }
            }
        }
    }
}
