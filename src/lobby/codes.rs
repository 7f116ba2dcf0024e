//! Join codes: six characters that are easy to read aloud and type, unique
//! among live rooms.
//!
//! Where codes come from can be swapped ([`Lobby::set_code_source`]) so a
//! test can force collisions; with 31^6 codes a random test never meets one.

use uuid::Uuid;

use super::Lobby;

/// Characters of join codes: no 0/O, 1/I/L look-alikes.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const CODE_LEN: usize = 6;

/// A random join code (not checked for uniqueness).
pub fn new_code_text() -> String {
    random_bytes()[..CODE_LEN]
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect()
}

/// Random bytes from the OS generator, through `uuid` (which the crate has
/// anyway) rather than another dependency.
fn random_bytes() -> [u8; 16] {
    *Uuid::new_v4().as_bytes()
}

/// The generator of candidate join codes of a lobby.
pub(super) struct CodeSource(Box<dyn FnMut() -> String + Send>);

impl Default for CodeSource {
    fn default() -> Self {
        CodeSource(Box::new(new_code_text))
    }
}

impl std::fmt::Debug for CodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSource")
    }
}

impl Lobby {
    /// Replaces the generator of join codes (random by default). The lobby
    /// still guarantees uniqueness: it draws again while a code is taken, so
    /// the generator must eventually return a free one.
    pub fn set_code_source(&mut self, source: impl FnMut() -> String + Send + 'static) {
        self.code_source = CodeSource(Box::new(source));
    }

    /// A code no live room has.
    pub(super) fn new_code(&mut self) -> String {
        loop {
            let code = (self.code_source.0)();
            if !self.codes.contains_key(&code) {
                return code;
            }
        }
    }
}
