//! Platform identities as their owner sees them (list, link, unlink) and the pending
//! single sign-on flows (state → nonce, PKCE verifier), consumed once by the callback.

use super::{Store, StoreConflict, StoreError, is_unique_violation};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// One (platform, external id) → account mapping.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityRecord {
    /// Opaque id, for unlinking from the web.
    pub id: String,
    pub platform: String,
    pub external_id: String,
    /// An email or user name to show; `None` for identities made before SSO.
    pub label: Option<String>,
    pub created_at: i64,
}

impl IdentityRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            platform: row.try_get("platform")?,
            external_id: row.try_get("external_id")?,
            label: row.try_get("label")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A login that went to its provider and has not come back yet.
#[derive(Clone, Debug)]
pub struct SsoFlow {
    pub provider_id: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Set when a logged-in account started the flow to link the identity.
    pub link_account_id: Option<AccountId>,
    pub expires_at: i64,
}

const IDENTITY_COLUMNS: &str = "id, platform, external_id, label, created_at";

impl Store {
    /// Keeps a flow under the hash of its state, and drops flows that expired.
    pub async fn save_sso_flow(&self, state_hash: &str, flow: &SsoFlow) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sso_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sso_flows (state_hash, provider_id, nonce, pkce_verifier, link_account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(state_hash)
        .bind(&flow.provider_id)
        .bind(&flow.nonce)
        .bind(&flow.pkce_verifier)
        .bind(flow.link_account_id.as_ref().map(AccountId::as_str))
        .bind(now)
        .bind(flow.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes and returns the unexpired flow of a state: a callback can use it once.
    pub async fn take_sso_flow(&self, state_hash: &str) -> Result<Option<SsoFlow>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM sso_flows WHERE state_hash = $1 \
             RETURNING provider_id, nonce, pkce_verifier, link_account_id, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let flow = SsoFlow {
            provider_id: row.try_get("provider_id")?,
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            link_account_id: row
                .try_get::<Option<String>, _>("link_account_id")?
                .map(AccountId::from_stored),
            expires_at: row.try_get("expires_at")?,
        };
        Ok((flow.expires_at > now_ms()).then_some(flow))
    }

    /// The identities of an account, oldest first.
    pub async fn identities_of(
        &self,
        account: &AccountId,
    ) -> Result<Vec<IdentityRecord>, StoreError> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE account_id = $1 ORDER BY created_at, platform"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(IdentityRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Links an identity to an account; [`StoreConflict::IdentityLinked`] when it
    /// already belongs to one.
    pub async fn add_identity(
        &self,
        platform: &str,
        external_id: &str,
        account: &AccountId,
        label: &str,
    ) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO identities (id, platform, external_id, account_id, label, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(platform)
        .bind(external_id)
        .bind(account.as_str())
        .bind(label)
        .bind(now_ms())
        .execute(self.pool())
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreConflict::IdentityLinked {
                platform: platform.into(),
            }
            .into()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Refreshes the label shown for an identity (a renamed user, a changed email).
    pub async fn set_identity_label(
        &self,
        platform: &str,
        external_id: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE identities SET label = $1 WHERE platform = $2 AND external_id = $3")
            .bind(label)
            .bind(platform)
            .bind(external_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes an account made moments ago that lost a race to be an identity's
    /// account, with its sessions and identities. Fails (changing nothing) once
    /// anything else refers to it.
    pub async fn discard_new_account(&self, account: &AccountId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM sessions WHERE account_id = $1",
            "DELETE FROM identities WHERE account_id = $1",
            "DELETE FROM accounts WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(account.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets an account's role (from an SSO role claim).
    pub async fn set_account_role(
        &self,
        account: &AccountId,
        role: super::Role,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(account.as_str())
            .execute(self.pool())
            .await?;
        self.keys.invalidate();
        Ok(())
    }

    /// Removes identity `id` of `account` when `keeps_way_in` says the identities left
    /// still let the owner log in, checked and deleted in one transaction so two
    /// concurrent unlinks cannot both pass. `Ok(None)`: no such identity on this
    /// account; `Ok(Some(false))`: refused, nothing changed.
    pub async fn unlink_identity(
        &self,
        account: &AccountId,
        id: &str,
        keeps_way_in: impl FnOnce(&IdentityRecord, &[IdentityRecord]) -> bool,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.begin_write().await?;
        // Locks the account row on PostgreSQL (SQLite's write lock is already held).
        sqlx::query("UPDATE accounts SET status = status WHERE id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE account_id = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let identities: Vec<IdentityRecord> = rows
            .iter()
            .map(IdentityRecord::from_row)
            .collect::<Result<_, _>>()?;
        let Some(target) = identities.iter().find(|i| i.id == id) else {
            return Ok(None);
        };
        let rest: Vec<IdentityRecord> = identities.iter().filter(|i| i.id != id).cloned().collect();
        if !keeps_way_in(target, &rest) {
            return Ok(Some(false));
        }
        sqlx::query("DELETE FROM identities WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(true))
    }
}
