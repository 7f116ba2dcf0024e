//! Identifiers the server makes: player ids (the id a player has without a
//! JWT `sub`). A leaf: used by the shell (drop-in endpoints) and by both
//! backends.

/// `p_` and 22 base62 characters of a random 128-bit number.
pub fn new_player_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    let mut s = String::with_capacity(24);
    s.push_str("p_");
    for _ in 0..22 {
        s.push(ALPHABET[(n % 62) as usize] as char);
        n /= 62;
    }
    s
}
