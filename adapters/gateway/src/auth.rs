//! Who is calling: a Chorus API key as `Authorization: Bearer KEY` (OpenAI's SDKs)
//! or `x-api-key: KEY` (Anthropic's). The key's account must be active and the key
//! must have the `chat` scope, since every request starts a run.

use crate::error::{ErrorKind, GatewayError};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use chorus_core::{ApiKeyScope, Core};
use chorus_model::account::Account;

/// The account of the request's API key.
pub async fn account(core: &Core, headers: &HeaderMap) -> Result<Account, GatewayError> {
    let key = key(headers).ok_or_else(GatewayError::unauthenticated)?;
    match core.api_key_account(key).await? {
        Some(keyed) if keyed.scopes.contains(&ApiKeyScope::Chat) => Ok(keyed.account),
        Some(_) => Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "this API key has the `read` scope only; the gateway needs a key with `chat`",
        )),
        None => Err(GatewayError::new(
            ErrorKind::Authentication,
            "API key is invalid or revoked",
        )),
    }
}

/// The key from `Authorization: Bearer` or, failing that, `x-api-key`.
fn key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::key;
    use axum::http::HeaderMap;

    #[test]
    fn bearer_wins_then_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(key(&h), None);
        h.insert("x-api-key", "ck_b".parse().unwrap());
        assert_eq!(key(&h), Some("ck_b"));
        h.insert("authorization", "Bearer ck_a".parse().unwrap());
        assert_eq!(key(&h), Some("ck_a"));
    }
}
