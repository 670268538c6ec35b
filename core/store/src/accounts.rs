//! Accounts, platform identities, web sessions and API keys.

use super::{Store, StoreConflict, StoreError, is_unique_violation};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use chorus_model::account::{Account, Role};

pub(super) fn account_from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: AccountId::from_stored(row.try_get("id")?),
        name: row.try_get("name")?,
        role: Role::parse(&row.try_get::<String, _>("role")?),
        status: row.try_get("status")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, name, role, status, password_hash, created_at";
/// [`ACCOUNT_COLUMNS`] of a table aliased `a`.
pub(super) const ACCOUNT_COLUMNS_A: &str =
    "a.id, a.name, a.role, a.status, a.password_hash, a.created_at";

impl Store {
    /// Creates an account with a web identity of the same name.
    pub async fn create_account(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
    ) -> Result<Account, StoreError> {
        let id = AccountId::generate();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, name, role, status, password_hash, created_at) \
             VALUES ($1, $2, $3, 'active', $4, $5)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreConflict::AccountNameTaken { name: name.into() }.into());
            }
            other => other?,
        };
        sqlx::query(
            "INSERT INTO identities (platform, external_id, account_id, created_at) VALUES ('web', $1, $2, $3)",
        )
        .bind(name)
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if self.initial_balance != 0 {
            super::ledger::post(
                &mut tx,
                &id,
                self.initial_balance,
                super::LedgerReason::Initial,
                None,
                None,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Account {
            id,
            name: name.to_string(),
            role,
            status: "active".into(),
            password_hash: password_hash.map(str::to_string),
            created_at: now,
        })
    }

    /// How many accounts exist (zero on a fresh install).
    pub async fn account_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    /// The account a platform identity belongs to.
    pub async fn account_by_identity(
        &self,
        platform: &str,
        external_id: &str,
    ) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT a.{} FROM accounts a JOIN identities i ON i.account_id = a.id \
             WHERE i.platform = $1 AND i.external_id = $2",
            ACCOUNT_COLUMNS.replace(", ", ", a.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(platform)
            .bind(external_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        account: &AccountId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, id, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(account.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account of an unexpired session; records its use and the browser's
    /// `user_agent` (to the minute, like an API key's, so a busy session does not cost
    /// a database write per request) for the owner's list of sessions.
    pub async fn account_by_session(
        &self,
        token_hash: &str,
        user_agent: Option<&str>,
    ) -> Result<Option<Account>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "SELECT a.{}, s.last_seen_at AS session_last_seen_at FROM accounts a \
             JOIN sessions s ON s.account_id = a.id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
            ACCOUNT_COLUMNS.replace(", ", ", a.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let last_seen: Option<i64> = row.try_get("session_last_seen_at")?;
        if last_seen.is_none_or(|t| now - t >= crate::sessions::LAST_SEEN_RESOLUTION_MS) {
            crate::sessions::touch(self, token_hash, now, user_agent).await?;
        }
        Ok(Some(account_from_row(&row)?))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets an account's password hash and ends its web sessions but `keep` (the one
    /// that changed it), in one transaction: a password change locks out whoever
    /// logged in with the old one. Returns how many sessions ended.
    pub async fn set_password(
        &self,
        account: &AccountId,
        password_hash: &str,
        keep: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("account"));
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
            .bind(account.as_str())
            .bind(keep.unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.keys.invalidate();
        Ok(ended.rows_affected())
    }

    /// Ends every web session of an account ("sign out everywhere"); returns how many.
    pub async fn delete_sessions_of(&self, account: &AccountId) -> Result<u64, StoreError> {
        let ended = sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account.as_str())
            .execute(self.pool())
            .await?;
        Ok(ended.rows_affected())
    }

    /// Deletes the sessions and unfinished SSO flows that expired before `now`; returns
    /// how many sessions went. Expired ones already log nobody in: this only keeps the
    /// tables from growing for ever.
    pub async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let ended = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM sso_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(ended.rows_affected())
    }
}
