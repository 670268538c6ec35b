//! CSRF tokens for the console's forms: derived from the session token (a hash no
//! other site can compute without the cookie), so they need no storage and end with
//! the session. A form's POST must carry it and come from this server (Origin).

use chorus_core::auth::token_hash;

/// The form token of a session.
pub fn token(session: &str) -> String {
    token_hash(&format!("chorus-admin-csrf:{session}"))
}

/// Whether `given` is the token of `session`, compared in constant time.
pub fn verify(session: &str, given: &str) -> bool {
    let expected = token(session);
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session() {
        let t = token("session-a");
        assert!(verify("session-a", &t));
        assert!(!verify("session-b", &t));
        assert!(!verify("session-a", ""));
        assert!(!verify("session-a", &t[1..]));
    }
}
