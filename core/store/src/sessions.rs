//! A person's own list of web sessions: each one's public id, when it was made and
//! last used, the browser that used it, and ending one of them. The token's hash is
//! the session's key and never leaves the store.

use super::{Store, StoreError};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;

/// A session's last use is written at most this often.
pub(crate) const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

/// The longest User-Agent kept; browsers send a few hundred characters at most.
const MAX_USER_AGENT_CHARS: usize = 300;

/// A web session as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Public id, to end this session (not its token, nor the token's hash).
    pub id: String,
    pub created_at: i64,
    /// Last request made with it, to the minute (none yet: only its login).
    pub last_seen_at: Option<i64>,
    pub expires_at: i64,
    /// The browser's User-Agent at its last use, cut to 300 characters.
    pub user_agent: Option<String>,
    /// Whether this is the session asking.
    pub current: bool,
}

/// Records a use of the session `token_hash` at `now`, and its browser.
pub(crate) async fn touch(
    store: &Store,
    token_hash: &str,
    now: i64,
    user_agent: Option<&str>,
) -> Result<(), StoreError> {
    let user_agent = user_agent.map(|ua| match ua.char_indices().nth(MAX_USER_AGENT_CHARS) {
        Some((cut, _)) => &ua[..cut],
        None => ua,
    });
    sqlx::query(
        "UPDATE sessions SET last_seen_at = $1, user_agent = COALESCE($2, user_agent) \
         WHERE token_hash = $3",
    )
    .bind(now)
    .bind(user_agent)
    .bind(token_hash)
    .execute(store.pool())
    .await?;
    Ok(())
}

impl Store {
    /// The account's unexpired sessions, newest first; `current` (a token hash) marks
    /// the one asking.
    pub async fn sessions_of(
        &self,
        account: &AccountId,
        current: Option<&str>,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, token_hash, created_at, last_seen_at, expires_at, user_agent \
             FROM sessions WHERE account_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, id",
        )
        .bind(account.as_str())
        .bind(now_ms())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get("token_hash")?;
                Ok(SessionInfo {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                    expires_at: r.try_get("expires_at")?,
                    user_agent: r.try_get("user_agent")?,
                    current: current == Some(hash.as_str()),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Ends the session `id` of `account`; `NotFound` when the account has no such
    /// session (another account's id included).
    pub async fn delete_account_session(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<(), StoreError> {
        let ended = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id = $2")
            .bind(account.as_str())
            .bind(id)
            .execute(self.pool())
            .await?;
        if ended.rows_affected() == 0 {
            return Err(StoreError::NotFound("session"));
        }
        Ok(())
    }
}
