//! What an admin changes on an account, each change written with its audit entry in
//! one transaction, and the indexed lists the admin console reads (accounts, runs,
//! spend).

use super::accounts::{ACCOUNT_COLUMNS_A, account_from_row};
use super::audit::{Actor, AuditKind, Change, record};
use super::identities::IdentityRecord;
use super::ledger::{LedgerReason, post};
use super::{Account, Role, Run, Store, StoreConflict, StoreError};
use crate::Tx;
use chorus_model::ids::{AccountId, RunId};
use chorus_model::time::now_ms;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

/// An account as the console lists it.
#[derive(Clone, Debug, Serialize)]
pub struct AccountListing {
    #[serde(flatten)]
    pub account: Account,
    /// Micro-credits.
    pub balance: i64,
    /// Micro-credits charged for runs, ever.
    pub spent: i64,
    pub last_active_at: Option<i64>,
    /// The account's own auto-refill in micro-credits (0: never refilled); `None`
    /// follows the `[quota]` default.
    pub refill_amount: Option<i64>,
    /// The account's own smallest interval between two refills; `None` follows the
    /// `[quota]` default.
    pub refill_interval_secs: Option<i64>,
}

/// How to order the accounts list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccountSort {
    #[default]
    Spend,
    LastActive,
    Name,
}

impl AccountSort {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spend" => Some(Self::Spend),
            "last_active" => Some(Self::LastActive),
            "name" => Some(Self::Name),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spend => "spend",
            Self::LastActive => "last_active",
            Self::Name => "name",
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Spend => "a.spent DESC, a.id",
            Self::LastActive => "a.last_active_at DESC NULLS LAST, a.id",
            Self::Name => "a.name",
        }
    }
}

/// Which runs to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only queued and streaming runs.
    pub active: bool,
    pub status: Option<String>,
    pub account: Option<AccountId>,
    pub model: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// A run in the console's list, with its account's name.
#[derive(Clone, Debug, Serialize)]
pub struct RunListing {
    #[serde(flatten)]
    pub run: Run,
    pub account_name: String,
}

/// The account as the audit log records it (no secrets).
fn snapshot(account: &Account, balance: Option<i64>) -> serde_json::Value {
    let mut v = json!({
        "id": account.id.as_str(),
        "name": account.name,
        "role": account.role.as_str(),
        "status": account.status,
    });
    if let Some(b) = balance {
        v["balance"] = json!(b);
    }
    v
}

/// Locks a live (not merged) account's row and reads it with its balance.
async fn lock_live(tx: &mut Tx, id: &AccountId) -> Result<(Account, i64), StoreError> {
    let sql = format!(
        "UPDATE accounts SET balance = balance WHERE id = $1 AND merged_into IS NULL \
         RETURNING {}, balance",
        ACCOUNT_COLUMNS_A.replace("a.", "")
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    Ok((account_from_row(&row)?, row.try_get("balance")?))
}

/// An admin action's audit entry on one object, written in the transaction that
/// makes the change (the store's admin modules share it).
pub(crate) fn admin_change<'a>(
    actor: &'a Actor,
    action: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Change<'a> {
    Change {
        kind: AuditKind::Admin,
        actor,
        action,
        object_type,
        object_id: Some(object_id),
        before,
        after,
    }
}

impl Store {
    /// Sets an account's status (`active` or `suspended`); returns it as it was.
    pub async fn admin_set_status(
        &self,
        actor: &Actor,
        id: &AccountId,
        status: &str,
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin_write().await?;
        let (before, _) = lock_live(&mut tx, id).await?;
        sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let mut after = before.clone();
        after.status = status.to_string();
        let action = if status == "active" {
            "reactivate"
        } else {
            "suspend"
        };
        let change = admin_change(
            actor,
            action,
            "account",
            id.as_str(),
            snapshot(&before, None),
            snapshot(&after, None),
        );
        record(&mut tx, &change).await?;
        tx.commit().await?;
        self.keys.invalidate();
        Ok(before)
    }

    /// Sets an account's role; returns it as it was.
    pub async fn admin_set_role(
        &self,
        actor: &Actor,
        id: &AccountId,
        role: Role,
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin_write().await?;
        let (before, _) = lock_live(&mut tx, id).await?;
        sqlx::query("UPDATE accounts SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let mut after = before.clone();
        after.role = role;
        let change = admin_change(
            actor,
            "set_role",
            "account",
            id.as_str(),
            snapshot(&before, None),
            snapshot(&after, None),
        );
        record(&mut tx, &change).await?;
        tx.commit().await?;
        self.keys.invalidate();
        Ok(before)
    }

    /// Adds `amount` micro-credits (negative deducts) to a live account, active or
    /// suspended, with a `grant` ledger row carrying `note`; returns the new balance.
    pub async fn admin_credit(
        &self,
        actor: &Actor,
        id: &AccountId,
        amount: i64,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let (account, balance) = lock_live(&mut tx, id).await?;
        post(&mut tx, id, amount, LedgerReason::Grant, None, None, note).await?;
        let action = if amount >= 0 { "grant" } else { "deduct" };
        let mut after = snapshot(&account, Some(balance + amount));
        after["amount"] = json!(amount);
        after["note"] = json!(note);
        let change = admin_change(
            actor,
            action,
            "account",
            id.as_str(),
            snapshot(&account, Some(balance)),
            after,
        );
        record(&mut tx, &change).await?;
        tx.commit().await?;
        Ok(balance + amount)
    }

    /// Sets an account's own auto-refill: `amount` micro-credits (0: never) at most
    /// every `interval_secs`; `None` for either follows the `[quota]` default.
    pub async fn admin_set_refill(
        &self,
        actor: &Actor,
        id: &AccountId,
        amount: Option<i64>,
        interval_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let (account, _) = lock_live(&mut tx, id).await?;
        let row =
            sqlx::query("SELECT refill_amount, refill_interval_secs FROM accounts WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let mut before = snapshot(&account, None);
        before["refill_amount"] = json!(row.try_get::<Option<i64>, _>("refill_amount")?);
        before["refill_interval_secs"] =
            json!(row.try_get::<Option<i64>, _>("refill_interval_secs")?);
        sqlx::query(
            "UPDATE accounts SET refill_amount = $1, refill_interval_secs = $2 WHERE id = $3",
        )
        .bind(amount)
        .bind(interval_secs)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let mut after = snapshot(&account, None);
        after["refill_amount"] = json!(amount);
        after["refill_interval_secs"] = json!(interval_secs);
        let change = admin_change(actor, "set_refill", "account", id.as_str(), before, after);
        record(&mut tx, &change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every web session and revokes every API key of an account; returns how
    /// many of each.
    pub async fn admin_revoke_access(
        &self,
        actor: &Actor,
        id: &AccountId,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.begin_write().await?;
        let (account, _) = lock_live(&mut tx, id).await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let keys = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let change = admin_change(
            actor,
            "revoke_access",
            "account",
            id.as_str(),
            snapshot(&account, None),
            json!({"sessions_ended": sessions, "keys_revoked": keys}),
        );
        record(&mut tx, &change).await?;
        tx.commit().await?;
        self.keys.invalidate();
        Ok((sessions, keys))
    }

    /// Removes identity `identity` from an account. The last identity is kept: an
    /// account without one could never be reached again. `Ok(false)`: no such identity.
    pub async fn admin_unlink_identity(
        &self,
        actor: &Actor,
        id: &AccountId,
        identity: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        lock_live(&mut tx, id).await?;
        let identities = self.identities_in(&mut tx, id).await?;
        let Some(target) = identities.iter().find(|i| i.id == identity) else {
            return Ok(false);
        };
        if identities.len() == 1 {
            return Err(StoreConflict::LastIdentity.into());
        }
        sqlx::query("DELETE FROM identities WHERE id = $1 AND account_id = $2")
            .bind(identity)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let change = Change {
            kind: AuditKind::Admin,
            actor,
            action: "unlink_identity",
            object_type: "account",
            object_id: Some(id.as_str()),
            before: serde_json::to_value(target).unwrap_or_default(),
            after: serde_json::Value::Null,
        };
        record(&mut tx, &change).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn identities_in(
        &self,
        tx: &mut Tx,
        id: &AccountId,
    ) -> Result<Vec<IdentityRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, platform, external_id, label, created_at FROM identities WHERE account_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IdentityRecord {
                    id: r.try_get("id")?,
                    platform: r.try_get("platform")?,
                    external_id: r.try_get("external_id")?,
                    label: r.try_get("label")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Deletes an account and everything it owns (conversations, runs, ledger,
    /// identities, sessions, keys, link codes) and the tombstones merged into it; the
    /// audit log keeps the entry saying so. Refused while one of its runs is going.
    pub async fn admin_delete_account(
        &self,
        actor: &Actor,
        id: &AccountId,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let (account, balance) = lock_live(&mut tx, id).await?;
        let owners: Vec<String> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1 OR merged_into = $1")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        for owner in &owners {
            let active = sqlx::query(
                "SELECT id FROM runs WHERE account_id = $1 AND status IN ('queued', 'streaming')",
            )
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
            if active.is_some() {
                return Err(StoreConflict::AccountRunActive.into());
            }
            let conversations: Vec<String> =
                sqlx::query_scalar("SELECT id FROM conversations WHERE account_id = $1")
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await?;
            for c in conversations {
                super::conversations::delete_rows(&mut tx, &c).await?;
            }
            for sql in [
                "DELETE FROM runs WHERE account_id = $1",
                "DELETE FROM ledger WHERE account_id = $1",
                "DELETE FROM identities WHERE account_id = $1",
                "DELETE FROM sessions WHERE account_id = $1",
                "DELETE FROM api_keys WHERE account_id = $1",
                "DELETE FROM link_codes WHERE account_id = $1",
                "DELETE FROM sso_flows WHERE link_account_id = $1",
                "DELETE FROM access_group_members WHERE account_id = $1",
            ] {
                sqlx::query(sql).bind(owner).execute(&mut *tx).await?;
            }
        }
        sqlx::query("DELETE FROM accounts WHERE merged_into = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let change = admin_change(
            actor,
            "delete_account",
            "account",
            id.as_str(),
            snapshot(&account, Some(balance)),
            serde_json::Value::Null,
        );
        record(&mut tx, &change).await?;
        tx.commit().await?;
        self.keys.invalidate();
        Ok(())
    }

    /// Live accounts whose name starts with `query` (case-sensitive, a range of the
    /// name index), or that have an identity whose external id or label is `query`
    /// (all when `None`), sorted and paginated. Every condition reads an index.
    pub async fn list_accounts(
        &self,
        query: Option<&str>,
        sort: AccountSort,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AccountListing>, StoreError> {
        // Names from `query` up to (not including) `query` followed by the highest
        // character: exactly the names it prefixes.
        let upper = query.map(|q| format!("{q}\u{10FFFF}"));
        // Compared in code point order on both backends (SQLite's BINARY; PostgreSQL's
        // "C", which its index `accounts_name_c` serves), whatever the locale.
        let name = match self.backend() {
            super::Backend::Sqlite => "a.name",
            super::Backend::Postgres => "a.name COLLATE \"C\"",
        };
        // Without a query the condition is left out (not made true by a NULL), so the
        // planner walks the sort's index.
        let search = if query.is_some() {
            format!(
                "AND a.id IN (SELECT n.id FROM accounts n WHERE {} >= $1 AND {} < $2 \
                 UNION SELECT i.account_id FROM identities i WHERE i.external_id = $1 \
                 UNION SELECT l.account_id FROM identities l WHERE l.label = $1)",
                name.replace("a.", "n."),
                name.replace("a.", "n.")
            )
        } else {
            "AND COALESCE($1, $2) IS NULL".to_string()
        };
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS_A}, a.balance, a.spent, a.last_active_at, a.refill_amount, a.refill_interval_secs FROM accounts a \
             WHERE a.merged_into IS NULL {search} ORDER BY {} LIMIT $3 OFFSET $4",
            sort.order_by()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query)
            .bind(upper)
            .bind(limit.clamp(1, 500))
            .bind(offset.max(0))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountListing {
                    account: account_from_row(r)?,
                    balance: r.try_get("balance")?,
                    spent: r.try_get("spent")?,
                    last_active_at: r.try_get("last_active_at")?,
                    refill_amount: r.try_get("refill_amount")?,
                    refill_interval_secs: r.try_get("refill_interval_secs")?,
                })
            })
            .collect()
    }

    /// One live account as the console lists it.
    pub async fn account_listing(
        &self,
        id: &AccountId,
    ) -> Result<Option<AccountListing>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS_A}, a.balance, a.spent, a.last_active_at, a.refill_amount, a.refill_interval_secs FROM accounts a \
             WHERE a.id = $1 AND a.merged_into IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(AccountListing {
                account: account_from_row(&r)?,
                balance: r.try_get("balance")?,
                spent: r.try_get("spent")?,
                last_active_at: r.try_get("last_active_at")?,
                refill_amount: r.try_get("refill_amount")?,
                refill_interval_secs: r.try_get("refill_interval_secs")?,
            })
        })
        .transpose()
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunListing>, StoreError> {
        let sql = format!(
            "SELECT {}, a.name AS account_name FROM runs r JOIN accounts a ON a.id = r.account_id \
             WHERE ($1 = 0 OR r.status IN ('queued', 'streaming')) AND ($2 IS NULL OR r.status = $2) \
             AND ($3 IS NULL OR r.account_id = $3) AND ($4 IS NULL OR r.model = $4) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $5 OFFSET $6",
            super::runs::RUN_COLUMNS_R
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(filter.active))
            .bind(filter.status.as_deref())
            .bind(filter.account.as_ref().map(AccountId::as_str))
            .bind(filter.model.as_deref())
            .bind(filter.limit.clamp(1, 500))
            .bind(filter.offset.max(0))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RunListing {
                    run: Run::from_row(r)?,
                    account_name: r.try_get("account_name")?,
                })
            })
            .collect()
    }

    /// The queued and streaming runs of an account (to stop them when it is suspended).
    pub async fn active_runs_of(&self, id: &AccountId) -> Result<Vec<RunId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE account_id = $1 AND status IN ('queued', 'streaming')",
        )
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(RunId::from_stored).collect())
    }

    /// How many conversations and unexpired web sessions an account has.
    pub async fn account_counts(&self, id: &AccountId) -> Result<(i64, i64), StoreError> {
        let conversations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE account_id = $1")
                .bind(id.as_str())
                .fetch_one(self.pool())
                .await?;
        let sessions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE account_id = $1 AND expires_at > $2",
        )
        .bind(id.as_str())
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok((conversations, sessions))
    }

    /// How many runs are queued or streaming now, on every instance.
    pub async fn active_run_count(&self) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM runs WHERE status IN ('queued', 'streaming')")
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get("n")?)
    }

    /// Micro-credits charged for runs since `since` (Unix ms, an hour's start), over
    /// every account: from the hourly rollup (`run_stats`, charged in the transaction
    /// that ends each run, as its ledger row), so a month is at most 744 × 8 rows.
    pub async fn spend_since(&self, since: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS total FROM run_stats \
             WHERE span = 3600000 AND bucket >= $1",
        )
        .bind(since)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("total")?)
    }
}
