//! An admin's view of and actions on accounts: search, the account page, suspend and
//! reactivate, role, credits, revoking access, unlinking, deletion. Each change is
//! written with its audit entry in one transaction (by the store).

use super::super::identity::IdentityView;
use super::super::ledger::MAX_GRANT;
use super::Admin;
use crate::core::{Core, CoreError, Forbidden, InvalidInput, UsageReport};
use crate::quota::credits_to_micros;
use chorus_model::ids::AccountId;
use chorus_model::{Account, Role};
use chorus_store::{AccountListing, AccountSort, ApiKeyInfo, LedgerEntry};
use serde::Serialize;

/// Accounts per page of the console's lists.
pub const PAGE: i64 = 50;
/// The longest search an admin may type (longer matches no name or identity).
const MAX_QUERY: usize = 256;
/// Days of usage the account page charts.
const USAGE_DAYS: u32 = 30;
/// The longest interval an account's own refill may wait (a year and a day).
const MAX_REFILL_INTERVAL_SECS: i64 = 366 * 86_400;

/// Everything the account page shows.
#[derive(Clone, Debug, Serialize)]
pub struct AccountDetail {
    #[serde(flatten)]
    pub listing: AccountListing,
    pub identities: Vec<IdentityView>,
    pub api_keys: Vec<ApiKeyInfo>,
    pub conversations: i64,
    pub sessions: i64,
    /// The page of the ledger asked for, newest first.
    pub ledger: Vec<LedgerEntry>,
    /// Usage of the last 30 days by day and by model, and the balance at each day's
    /// end (from the account's ledger index).
    pub usage: UsageReport,
    /// The access groups it is in (what they give adds to its role's lists).
    pub groups: Vec<chorus_store::AccessGroup>,
}

impl Core {
    /// Accounts whose name starts with `query` or that have an identity (Discord,
    /// Slack, Matrix, SSO: external id or label) equal to it, sorted, a page at a time
    /// (`page` from 0).
    pub async fn admin_accounts(
        &self,
        _: &Admin,
        query: Option<&str>,
        sort: AccountSort,
        page: u32,
    ) -> Result<Vec<AccountListing>, CoreError> {
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        if query.is_some_and(|q| q.len() > MAX_QUERY) {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .list_accounts(query, sort, i64::from(page) * PAGE, PAGE)
            .await?)
    }

    /// The account page: the account, its identities, keys, counts and a page of its
    /// ledger (`ledger_page` from 0).
    pub async fn admin_account(
        &self,
        admin: &Admin,
        id: &AccountId,
        ledger_page: u32,
    ) -> Result<AccountDetail, CoreError> {
        let listing = self
            .store
            .account_listing(id)
            .await?
            .ok_or(CoreError::NotFound("account"))?;
        let identities = self.identities(&listing.account).await?;
        let api_keys = self.store.list_api_keys(id).await?;
        let (conversations, sessions) = self.store.account_counts(id).await?;
        let ledger = self
            .store
            .ledger_page(id, i64::from(ledger_page) * PAGE, PAGE)
            .await?;
        let usage = self.usage(&listing.account, USAGE_DAYS).await?;
        let groups = self.groups_of(admin, id).await?;
        Ok(AccountDetail {
            usage,
            groups,
            listing,
            identities,
            api_keys,
            conversations,
            sessions,
            ledger,
        })
    }

    /// Suspends an account: every surface refuses it from now on (web sessions, API
    /// keys, the gateway, chat surfaces) and its queued and streaming runs are stopped.
    pub async fn suspend_account(&self, admin: &Admin, id: &AccountId) -> Result<(), CoreError> {
        not_self(admin, id)?;
        self.store
            .admin_set_status(&admin.actor(), id, Account::SUSPENDED)
            .await?;
        for run in self.store.active_runs_of(id).await? {
            if !self.engine.stop_local(&run) {
                self.store.request_stop(&run).await?;
            }
        }
        tracing::info!(account = %id, "account suspended");
        Ok(())
    }

    /// Lets a suspended account in again.
    pub async fn reactivate_account(&self, admin: &Admin, id: &AccountId) -> Result<(), CoreError> {
        self.store
            .admin_set_status(&admin.actor(), id, Account::ACTIVE)
            .await?;
        tracing::info!(account = %id, "account reactivated");
        Ok(())
    }

    /// Changes an account's role (an admin cannot demote themselves).
    pub async fn set_role(
        &self,
        admin: &Admin,
        id: &AccountId,
        role: Role,
    ) -> Result<(), CoreError> {
        if role != Role::Admin {
            not_self(admin, id)?;
        }
        self.store.admin_set_role(&admin.actor(), id, role).await?;
        Ok(())
    }

    /// Adds `credits` (negative deducts) to an account, active or suspended, with a
    /// `grant` ledger row and an audit entry (`grant` or `deduct`); returns the new
    /// balance in micro-credits. An admin account's note says who gave it (`by NAME:
    /// note`); the CLI operator's is kept as given. The one way credits are granted:
    /// the console, `POST /api/admin/grants` and `chorus user grant` (these two name
    /// the account, see [`Core::account_by_name`]).
    pub async fn grant_credits(
        &self,
        admin: &Admin,
        id: &AccountId,
        credits: f64,
        note: Option<&str>,
    ) -> Result<i64, CoreError> {
        if !(credits.is_finite() && credits != 0.0 && credits.abs() <= MAX_GRANT) {
            return Err(InvalidInput::GrantAmount {
                amount: credits,
                max: MAX_GRANT,
            }
            .into());
        }
        let note = note.map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > 300) {
            return Err(InvalidInput::NoteTooLong { max: 300 }.into());
        }
        let note = match (admin.account(), note) {
            (Some(by), Some(n)) => Some(format!("by {}: {n}", by.name)),
            (Some(by), None) => Some(format!("by {}", by.name)),
            (None, n) => n.map(str::to_string),
        };
        Ok(self
            .store
            .admin_credit(
                &admin.actor(),
                id,
                credits_to_micros(credits),
                note.as_deref(),
            )
            .await?)
    }

    /// Sets an account's own auto-refill (what the `[quota]` refill does for it when a
    /// run would be refused): `credits` (0: never refilled) at most every
    /// `interval_secs`; `None` for either follows the `[quota]` default. Audited.
    pub async fn set_refill(
        &self,
        admin: &Admin,
        id: &AccountId,
        credits: Option<f64>,
        interval_secs: Option<i64>,
    ) -> Result<(), CoreError> {
        let bad = InvalidInput::Refill { max: MAX_GRANT };
        if credits.is_some_and(|c| !(c.is_finite() && (0.0..=MAX_GRANT).contains(&c))) {
            return Err(bad.into());
        }
        if interval_secs.is_some_and(|s| !(60..=MAX_REFILL_INTERVAL_SECS).contains(&s)) {
            return Err(bad.into());
        }
        self.store
            .admin_set_refill(
                &admin.actor(),
                id,
                credits.map(credits_to_micros),
                interval_secs,
            )
            .await?;
        Ok(())
    }

    /// Ends every web session and revokes every API key of an account; returns how
    /// many of each.
    pub async fn revoke_access(
        &self,
        admin: &Admin,
        id: &AccountId,
    ) -> Result<(u64, u64), CoreError> {
        Ok(self.store.admin_revoke_access(&admin.actor(), id).await?)
    }

    /// Unlinks identity `identity` from an account (never its last one).
    pub async fn admin_unlink_identity(
        &self,
        admin: &Admin,
        id: &AccountId,
        identity: &str,
    ) -> Result<(), CoreError> {
        if self
            .store
            .admin_unlink_identity(&admin.actor(), id, identity)
            .await?
        {
            Ok(())
        } else {
            Err(CoreError::NotFound("identity"))
        }
    }

    /// Deletes an account and its data; `confirm` must be its name.
    pub async fn delete_account(
        &self,
        admin: &Admin,
        id: &AccountId,
        confirm: &str,
    ) -> Result<(), CoreError> {
        not_self(admin, id)?;
        let account = self
            .store
            .account_listing(id)
            .await?
            .ok_or(CoreError::NotFound("account"))?
            .account;
        if confirm.trim() != account.name {
            return Err(InvalidInput::DeleteConfirmation { name: account.name }.into());
        }
        self.store.admin_delete_account(&admin.actor(), id).await?;
        tracing::info!(account = %id, "account deleted");
        Ok(())
    }
}

/// Refuses an admin acting on their own account where it would lock them out.
fn not_self(admin: &Admin, id: &AccountId) -> Result<(), CoreError> {
    match admin.account() {
        Some(a) if &a.id == id => Err(Forbidden::OwnAccount.into()),
        _ => Ok(()),
    }
}
