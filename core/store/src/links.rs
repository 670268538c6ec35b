//! Link codes and account merges: joining a platform identity to the account that
//! issued a code, and folding the identity's previous account into it.

use super::ledger::{LedgerReason, lock_account, post};
use super::{Account, Store, StoreConflict, StoreError};
use crate::Tx;
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;

/// A person as one surface knows them: (platform, external id), e.g. `("web",
/// "alice")`, `("matrix", "@alice:example.org")`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    pub platform: String,
    pub external_id: String,
}

impl Identity {
    pub fn new(platform: impl Into<String>, external_id: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            external_id: external_id.into(),
        }
    }

    /// The web identity of a local account: its login name.
    pub fn web(name: &str) -> Self {
        Self::new("web", name)
    }

    /// The key of this identity in rate limits.
    pub fn key(&self) -> String {
        format!("{}:{}", self.platform, self.external_id)
    }
}

/// What redeeming a link code did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LinkOutcome {
    /// The account the identity belongs to now (the issuer's).
    pub account_id: AccountId,
    /// The identity's previous account, now a tombstone pointing to `account_id`.
    pub merged_from: Option<AccountId>,
    pub conversations_moved: i64,
    /// Micro-credits moved with the merge.
    pub balance_moved: i64,
}

impl Store {
    /// Stores a new link code (its hash) for `account`, unless it already holds
    /// `max_active` live ones.
    pub async fn create_link_code(
        &self,
        account: &AccountId,
        code_hash: &str,
        expires_at: i64,
        max_active: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        lock_account(&mut tx, account)
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM link_codes WHERE account_id = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(account.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let active: i64 = row.try_get("n")?;
        if active >= max_active {
            return Err(StoreConflict::TooManyLinkCodes { active }.into());
        }
        sqlx::query(
            "INSERT INTO link_codes (id, account_id, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(account.as_str())
        .bind(code_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems a live code for `identity`, in one transaction: the code is used up,
    /// the identity joins the issuing account, and the identity's previous account
    /// (conversations, runs with them, bindings, identities, balance) is merged into
    /// it and left as a tombstone whose sessions and API keys no longer work.
    /// `NotFound("link code")` for a wrong, used or expired code; nothing changes on
    /// any error.
    pub async fn redeem_link_code(
        &self,
        code_hash: &str,
        identity: &Identity,
    ) -> Result<LinkOutcome, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE link_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING account_id",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound("link code"));
        };
        let issuer = AccountId::from_stored(row.try_get("account_id")?);
        let current = sqlx::query(
            "SELECT account_id FROM identities WHERE platform = $1 AND external_id = $2",
        )
        .bind(&identity.platform)
        .bind(&identity.external_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<String, _>("account_id"))
        .transpose()?
        .map(AccountId::from_stored);
        let outcome = match current {
            Some(old) if old == issuer => {
                return Err(StoreConflict::OwnLinkCode.into());
            }
            Some(old) => merge(&mut tx, &old, &issuer).await?,
            None => {
                lock_account(&mut tx, &issuer)
                    .await?
                    .ok_or(StoreError::NotFound("link code"))?;
                sqlx::query(
                    "INSERT INTO identities (platform, external_id, account_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&identity.platform)
                .bind(&identity.external_id)
                .bind(issuer.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                LinkOutcome {
                    account_id: issuer,
                    merged_from: None,
                    conversations_moved: 0,
                    balance_moved: 0,
                }
            }
        };
        tx.commit().await?;
        self.keys.invalidate();
        Ok(outcome)
    }

    /// The live account behind `account`: itself, or the account a tombstone was
    /// merged into (tombstones always point at a live account).
    pub async fn live_account(&self, account: &Account) -> Result<Option<Account>, StoreError> {
        if account.is_active() {
            return Ok(Some(account.clone()));
        }
        let row = sqlx::query("SELECT merged_into FROM accounts WHERE id = $1")
            .bind(account.id.as_str())
            .fetch_optional(self.pool())
            .await?;
        let target: Option<String> = match row {
            Some(r) => r.try_get("merged_into")?,
            None => None,
        };
        match target {
            Some(id) => Ok(self
                .account(&AccountId::from_stored(id))
                .await?
                .filter(Account::is_active)),
            None => Ok(None),
        }
    }
}

/// Merges `old` into `new` inside `tx`. Both account rows are locked first (in id
/// order, so two merges cannot deadlock), so no run of `old` starts or is charged
/// while it moves.
async fn merge(tx: &mut Tx, old: &AccountId, new: &AccountId) -> Result<LinkOutcome, StoreError> {
    let (first, second) = if old < new { (old, new) } else { (new, old) };
    let a = lock_account(tx, first).await?;
    let b = lock_account(tx, second).await?;
    let (old_balance, new_ok) = if first == old { (a, b) } else { (b, a) };
    if new_ok.is_none() {
        return Err(StoreError::NotFound("link code"));
    }
    let Some(balance) = old_balance else {
        return Err(StoreConflict::IdentityAccountInactive.into());
    };
    let now = now_ms();
    let moved =
        |table: &'static str| format!("UPDATE {table} SET account_id = $1 WHERE account_id = $2");
    let conversations = sqlx::query(sqlx::AssertSqlSafe(moved("conversations")))
        .bind(new.as_str())
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected() as i64;
    for table in ["runs", "identities"] {
        sqlx::query(sqlx::AssertSqlSafe(moved(table)))
            .bind(new.as_str())
            .bind(old.as_str())
            .execute(&mut **tx)
            .await?;
    }
    super::access_groups::merge_memberships(tx, old, new).await?;
    if balance != 0 {
        let out = format!("merged into account {new}");
        let into = format!("merged from account {old}");
        post(
            tx,
            old,
            -balance,
            LedgerReason::Merge,
            None,
            None,
            Some(&out),
        )
        .await?;
        post(
            tx,
            new,
            balance,
            LedgerReason::Merge,
            None,
            None,
            Some(&into),
        )
        .await?;
    }
    // The console's spend follows the person: the old account's moves with it (its
    // ledger rows are read with the live account's already).
    sqlx::query(
        "UPDATE accounts SET spent = spent + (SELECT o.spent FROM accounts o WHERE o.id = $2), \
         last_active_at = COALESCE(last_active_at, (SELECT o.last_active_at FROM accounts o WHERE o.id = $2)) \
         WHERE id = $1",
    )
    .bind(new.as_str())
    .bind(old.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE accounts SET status = 'merged', merged_into = $1, spent = 0 WHERE id = $2")
        .bind(new.as_str())
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    // Earlier tombstones of `old` now point at the live account.
    sqlx::query("UPDATE accounts SET merged_into = $1 WHERE merged_into = $2")
        .bind(new.as_str())
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE link_codes SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    tracing::info!(from = %old, into = %new, conversations, balance, "merged accounts");
    Ok(LinkOutcome {
        account_id: new.clone(),
        merged_from: Some(old.clone()),
        conversations_moved: conversations,
        balance_moved: balance,
    })
}
