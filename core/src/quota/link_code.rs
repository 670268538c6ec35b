//! Link codes: short, human-typeable, single-use codes that join an identity on one
//! surface to the account that issued the code on another.
//!
//! Eight characters from a 30-letter alphabet without look-alikes (no 0/O, 1/I/L, U),
//! shown as `XXXX-XXXX`: 30^8 ≈ 6.6 × 10^11 codes. With at most
//! [`MAX_ACTIVE_LINK_CODES`] live codes per account, a 10-minute life and a few
//! guesses per identity per window, guessing one is hopeless. Only a hash is stored.

use rand::Rng;

/// The alphabet codes are drawn from.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
const LEN: usize = 8;

/// How long a code stays redeemable.
pub const LINK_CODE_TTL_MS: i64 = 10 * 60 * 1000;

/// Live (unused, unexpired) codes one account may hold.
pub const MAX_ACTIVE_LINK_CODES: i64 = 3;

/// A well-formed link code, normalized (upper case, no separator).
#[derive(Clone, PartialEq, Eq)]
pub struct LinkCode(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkCodeError {
    #[error(
        "a link code is 8 letters and digits like ABCD-2345 (no 0, 1, I, L, O or U); got {0} characters"
    )]
    Length(usize),
    #[error("a link code has only letters and digits like ABCD-2345 (no 0, 1, I, L, O or U)")]
    Alphabet,
}

impl LinkCode {
    /// A fresh random code.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        Self(
            (0..LEN)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// Parses what a person typed: case and `-`/space separators do not matter.
    pub fn parse(raw: &str) -> Result<Self, LinkCodeError> {
        if raw.len() > 64 {
            return Err(LinkCodeError::Length(raw.chars().count()));
        }
        let code: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if code.chars().count() != LEN {
            return Err(LinkCodeError::Length(code.chars().count()));
        }
        if !code.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(LinkCodeError::Alphabet);
        }
        Ok(Self(code))
    }

    /// `XXXX-XXXX`, as shown to people.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }

    /// What the store keeps: the SHA-256 of the normalized code.
    pub fn hash(&self) -> String {
        crate::auth::token_hash(&self.0)
    }
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkCode(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_parse_back_in_any_spelling() {
        for _ in 0..200 {
            let code = LinkCode::generate();
            let shown = code.display();
            assert_eq!(shown.len(), 9);
            assert_eq!(LinkCode::parse(&shown).unwrap(), code);
            assert_eq!(LinkCode::parse(&shown.to_lowercase()).unwrap(), code);
            assert_eq!(
                LinkCode::parse(&shown.replace('-', " ")).unwrap().hash(),
                code.hash()
            );
        }
    }

    #[test]
    fn malformed_codes_are_named() {
        assert_eq!(LinkCode::parse(""), Err(LinkCodeError::Length(0)));
        assert_eq!(LinkCode::parse("ABCD-EFG"), Err(LinkCodeError::Length(7)));
        assert_eq!(LinkCode::parse("ABCD-EFGHJ"), Err(LinkCodeError::Length(9)));
        assert_eq!(LinkCode::parse("ABCD-EF0H"), Err(LinkCodeError::Alphabet));
        assert_eq!(LinkCode::parse("ABCD-ÉFGH"), Err(LinkCodeError::Alphabet));
        assert!(LinkCode::parse(&"A".repeat(1000)).is_err());
    }

    #[test]
    fn debug_never_shows_the_code() {
        assert_eq!(format!("{:?}", LinkCode::generate()), "LinkCode(****)");
    }
}
