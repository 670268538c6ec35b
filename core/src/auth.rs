//! Password hashing and bearer tokens (session cookies, API keys).
//!
//! Passwords use argon2id; tokens are 256-bit random strings stored only as SHA-256
//! hashes, so a database leak yields nothing that logs anyone in.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password must be at least {min} characters")]
    WeakPassword { min: usize },
}

/// Shortest password a local account may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Prefix of every Chorus API key, so leaked keys are recognisable by scanners.
pub const API_KEY_PREFIX: &str = "chorus_";

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword {
            min: MIN_PASSWORD_CHARS,
        });
    }
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a password against a stored hash; any malformed hash simply fails.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token (URL-safe, 43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh API key: the prefix and a random token.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", new_token())
}

/// The at-rest form of a token or API key.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A password hash that matches nothing, verified against when the account does not
/// exist so a login takes the same time either way.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$JZdCCcqR9ZOZU7DN0W93sVsmGjBDJD7ACo6d6o1AW3Y"
}

/// Bounds the password hashing (argon2id: about 19 MiB and tens of milliseconds of
/// CPU each) that runs at once. Logins need no account, so without a bound anyone can
/// make the server hash for as many requests as they send; with it, the excess waits
/// a little for a slot and is then refused, and the blocking pool and memory stay
/// bounded.
pub struct HashGate {
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// Why [`HashGate::run`] did not hash.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Every slot stayed taken for the whole wait.
    #[error("the server is busy checking other passwords; try again in a few seconds")]
    Busy,
    /// The hashing task died (it panicked).
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl HashGate {
    /// At most `concurrency` hashes at once (at least one); a caller waits up to
    /// `wait` for a slot.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
        }
    }

    /// Runs `work` (a hash or a verification) on the blocking pool once a slot is
    /// free, keeping the async workers free while it runs.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GateError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| GateError::Busy)?
            .map_err(|_| GateError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| GateError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_refuses_work_beyond_its_slots_after_the_wait() {
        let gate = Arc::new(HashGate::new(1, Duration::from_millis(50)));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.run(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    1
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        assert!(matches!(gate.run(|| 2).await, Err(GateError::Busy)));
        release_tx.send(()).unwrap();
        assert_eq!(holder.await.unwrap().unwrap(), 1);
        assert_eq!(gate.run(|| 3).await.unwrap(), 3);
    }

    #[test]
    fn password_round_trip_and_rejections() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("anything", "not-a-hash"));
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::WeakPassword { .. })
        ));
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
