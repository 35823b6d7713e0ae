//! Short codes: generation, and the hot path's cheap check of a path segment.

use rand::Rng;

pub const GENERATED_CODE_LEN: usize = 6;
const CODE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh 6-character code of [A-Za-z0-9]. `rand::rng()` is a CSPRNG (ChaCha, seeded
/// from the OS and reseeded), and the index is drawn without modulo bias.
pub fn generate_code() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

pub(crate) fn is_code_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Whether a path segment could be a short code at all; anything else is a 404 without a lookup.
pub fn is_plausible_code(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(is_code_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_alphanumerics_and_vary() {
        let codes: std::collections::HashSet<String> = (0..1000).map(|_| generate_code()).collect();
        assert!(codes.len() > 990, "codes repeat too often");
        for c in &codes {
            assert_eq!(c.len(), GENERATED_CODE_LEN);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()), "{c}");
        }
    }

    #[test]
    fn generated_codes_use_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            seen.extend(generate_code().chars());
        }
        assert_eq!(seen.len(), CODE_ALPHABET.len());
    }
}
