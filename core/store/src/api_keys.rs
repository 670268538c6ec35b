//! Per-account API keys with names, scopes, last use and revocation. Keys are stored
//! as SHA-256 hashes; only a short prefix is kept to recognise them in a list.

use super::{ACCOUNT_COLUMNS_A, Account, Store, StoreError};
use crate::accounts::account_from_row;
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Read conversations, runs, models and usage (GET requests only).
    Read,
    /// Everything the account does through the API: chat, stop, continue, manage
    /// conversations.
    Chat,
}

impl ApiKeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Read => "read",
            ApiKeyScope::Chat => "chat",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(ApiKeyScope::Read),
            "chat" => Some(ApiKeyScope::Chat),
            _ => None,
        }
    }

    /// Scopes as stored: space-separated.
    fn parse_list(s: &str) -> Vec<Self> {
        s.split_whitespace().filter_map(Self::parse).collect()
    }
}

/// An API key as its owner sees it: never the key, only its prefix.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<ApiKeyScope>,
    pub created_at: i64,
    /// Last request made with the key, to the minute.
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The account an API key authenticates, with what the key may do.
#[derive(Clone, Debug)]
pub struct KeyedAccount {
    pub account: Account,
    pub scopes: Vec<ApiKeyScope>,
}

/// A key's last use is written at most this often, so a busy key does not cost a
/// database write per request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

impl Store {
    /// Stores a key (its hash) for `account` with `scopes`.
    pub async fn create_scoped_api_key(
        &self,
        account: &AccountId,
        name: &str,
        key_hash: &str,
        prefix: &str,
        scopes: &[ApiKeyScope],
    ) -> Result<ApiKeyInfo, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let stored: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, key_hash, prefix, created_at, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(account.as_str())
        .bind(name)
        .bind(key_hash)
        .bind(prefix)
        .bind(now)
        .bind(stored.join(" "))
        .execute(self.pool())
        .await?;
        Ok(ApiKeyInfo {
            id,
            name: name.to_string(),
            prefix: prefix.to_string(),
            scopes,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        })
    }

    /// The account's keys, newest first, revoked ones included.
    pub async fn list_api_keys(&self, account: &AccountId) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at FROM api_keys \
             WHERE account_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(account.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("prefix")?,
                    scopes: ApiKeyScope::parse_list(&r.try_get::<String, _>("scopes")?),
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes the account's key `id`; false when the account has no such key (or it
    /// was revoked already).
    pub async fn revoke_api_key(&self, account: &AccountId, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(account.as_str())
        .execute(self.pool())
        .await?;
        self.keys.invalidate();
        Ok(done.rows_affected() == 1)
    }

    /// The account and scopes of an unrevoked key; records its use to the minute.
    /// Held for a few seconds per instance (`key_cache.rs`).
    pub async fn account_by_api_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<KeyedAccount>, StoreError> {
        self.keys
            .get_or_read(key_hash, || self.read_account_by_api_key(key_hash))
            .await
    }

    async fn read_account_by_api_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<KeyedAccount>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS_A}, k.scopes AS key_scopes, k.last_used_at AS key_last_used_at \
             FROM accounts a JOIN api_keys k ON k.account_id = a.id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let last_used: Option<i64> = row.try_get("key_last_used_at")?;
        let now = now_ms();
        if last_used.is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS) {
            // Conditional, so concurrent requests of one key write once per minute.
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE key_hash = $2 \
                 AND (last_used_at IS NULL OR last_used_at <= $3)",
            )
            .bind(now)
            .bind(key_hash)
            .bind(now - LAST_USED_RESOLUTION_MS)
            .execute(self.pool())
            .await?;
        }
        Ok(Some(KeyedAccount {
            account: account_from_row(&row)?,
            scopes: ApiKeyScope::parse_list(&row.try_get::<String, _>("key_scopes")?),
        }))
    }
}
