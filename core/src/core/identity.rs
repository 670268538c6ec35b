//! Single sign-on logins and the identities of an account, on [`Core`]: the flow's
//! state kept server-side and bound to the browser, an external identity mapped to an
//! account (created on first contact, linked when a logged-in user starts the flow),
//! the role taken from a claim, and unlinking that never leaves an account without a
//! way in.

use super::{Conflict, Core, CoreError, Forbidden};
use crate::auth;
use crate::sso::{ExternalIdentity, ProviderInfo, SsoError};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use chorus_store::{Account, IdentityRecord, Role, SsoFlow, StoreConflict, StoreError};
use rand::RngCore;
use serde::Serialize;

/// How long a started login may take at the provider.
const SSO_FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// The platform of local (name and password) logins.
const LOCAL_PLATFORM: &str = "web";

/// A started login: where to send the browser, and the state it must bring back
/// (the web surface keeps it in a short-lived cookie, binding the flow to the browser).
#[derive(Debug)]
pub struct SsoStart {
    pub redirect_url: String,
    pub state: String,
}

/// The query of a provider's redirect back to us.
#[derive(Debug, Default)]
pub struct SsoCallback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A finished login.
#[derive(Debug)]
pub struct SsoLogin {
    pub account: Account,
    /// A new session, unless the flow linked an identity to the current session's account.
    pub session_token: Option<String>,
    /// Whether the identity was new to this account (created or linked).
    pub linked: bool,
}

/// An identity as its owner sees it.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityView {
    #[serde(flatten)]
    pub identity: IdentityRecord,
    /// Whether it can be used to log in on the web here.
    pub can_log_in: bool,
}

impl Core {
    /// The SSO providers for the login page.
    pub fn sso_providers(&self) -> Vec<ProviderInfo> {
        self.sso.providers()
    }

    /// Whether local password login is allowed on the web.
    pub fn local_passwords_enabled(&self) -> bool {
        self.config.auth.local_passwords
    }

    /// Starts a login with `provider_id`; with `current`, the identity will be linked
    /// to that account instead of logging in.
    pub async fn sso_start(
        &self,
        provider_id: &str,
        current: Option<&Account>,
    ) -> Result<SsoStart, CoreError> {
        let authorization = self.sso.authorize(provider_id).await?;
        let flow = SsoFlow {
            provider_id: provider_id.to_string(),
            nonce: authorization.nonce,
            pkce_verifier: authorization.pkce_verifier,
            link_account_id: current.map(|a| a.id.clone()),
            expires_at: now_ms() + SSO_FLOW_TTL_MS,
        };
        self.store
            .save_sso_flow(&auth::token_hash(&authorization.state), &flow)
            .await?;
        tracing::info!(
            provider = provider_id,
            link = current.is_some(),
            "SSO login started"
        );
        Ok(SsoStart {
            redirect_url: authorization.url,
            state: authorization.state,
        })
    }

    /// Finishes a login from the provider's redirect. `browser_state` is the state the
    /// browser kept since the start; it must equal the returned one, so a callback URL
    /// made in another browser logs nobody in.
    pub async fn sso_callback(
        &self,
        provider_id: &str,
        callback: SsoCallback,
        browser_state: Option<&str>,
    ) -> Result<SsoLogin, CoreError> {
        self.sso.check_provider(provider_id)?;
        let state = callback.state.as_deref().ok_or(SsoError::StateMismatch)?;
        if browser_state != Some(state) {
            return Err(SsoError::StateMismatch.into());
        }
        let flow = self
            .store
            .take_sso_flow(&auth::token_hash(state))
            .await?
            .ok_or(SsoError::FlowExpired)?;
        if flow.provider_id != provider_id {
            return Err(SsoError::StateMismatch.into());
        }
        if let Some(error) = callback.error {
            let detail = callback.error_description.unwrap_or_default();
            return Err(SsoError::Denied(format!("{error} {detail}").trim().to_string()).into());
        }
        let code = callback
            .code
            .ok_or_else(|| SsoError::Denied("no authorization code in the redirect".into()))?;
        let external = self
            .sso
            .complete(provider_id, &code, &flow.pkce_verifier, &flow.nonce)
            .await
            .inspect_err(
                |e| tracing::warn!(provider = provider_id, error = %e, "SSO login failed"),
            )?;
        let linking = flow.link_account_id.is_some();
        let (mut account, linked) = self.account_for(&external, flow.link_account_id).await?;
        if account.is_suspended() {
            // Refused, with the reason, and recorded like every suspended attempt.
            self.usable_account(Some(account), "SSO login").await?;
            return Err(Forbidden::AccountSuspended.into());
        }
        if !account.is_active() {
            return Err(Forbidden::AccountDisabled.into());
        }
        if let Some(admin) = external.admin {
            let role = if admin { Role::Admin } else { Role::User };
            if role != account.role {
                self.store.set_account_role(&account.id, role).await?;
                tracing::info!(account = %account.id, role = role.as_str(), provider = provider_id, "role set from SSO claim");
                account.role = role;
            }
        }
        let session_token = if linking {
            None
        } else {
            Some(self.open_session(&account).await?)
        };
        tracing::info!(account = %account.id, platform = %external.platform, linked, "SSO login");
        Ok(SsoLogin {
            account,
            session_token,
            linked,
        })
    }

    /// The account an external identity logs into: its linked account, the account
    /// that started a linking flow, or a new account on first contact.
    pub(crate) async fn account_for(
        &self,
        external: &ExternalIdentity,
        link_to: Option<AccountId>,
    ) -> Result<(Account, bool), CoreError> {
        let (platform, external_id) = (&external.platform, &external.external_id);
        let existing = self
            .store
            .account_by_identity(platform, external_id)
            .await?;
        match (link_to, existing) {
            (Some(link_to), Some(owner)) if owner.id == link_to => Ok((owner, false)),
            (Some(_), Some(_)) => Err(SsoError::IdentityTaken(platform.clone()).into()),
            (Some(link_to), None) => {
                let account = self
                    .store
                    .account(&link_to)
                    .await?
                    .ok_or(CoreError::Unauthorized)?;
                self.store
                    .add_identity(platform, external_id, &account.id, &external.label)
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict(StoreConflict::IdentityLinked { .. }) => {
                            SsoError::IdentityTaken(platform.clone()).into()
                        }
                        other => CoreError::from(other),
                    })?;
                Ok((account, true))
            }
            (None, Some(owner)) => {
                self.store
                    .set_identity_label(platform, external_id, &external.label)
                    .await?;
                Ok((owner, false))
            }
            (None, None) => {
                let account = self.create_sso_account(external).await?;
                match self
                    .store
                    .add_identity(platform, external_id, &account.id, &external.label)
                    .await
                {
                    Ok(()) => Ok((account, true)),
                    // A concurrent first login of the same identity won the race: use
                    // its account and drop the one made here.
                    Err(StoreError::Conflict(StoreConflict::IdentityLinked { .. })) => {
                        tracing::warn!(account = %account.id, platform = %platform, "concurrent first SSO login; using the other account");
                        if let Err(e) = self.store.discard_new_account(&account.id).await {
                            tracing::warn!(account = %account.id, error = %e, "cannot remove the unused account");
                        }
                        let owner = self
                            .store
                            .account_by_identity(platform, external_id)
                            .await?
                            .ok_or(CoreError::NotFound("account"))?;
                        Ok((owner, false))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A new account (`accounts.default_role`, no password) named after the identity,
    /// with a random suffix when the name is taken.
    async fn create_sso_account(&self, external: &ExternalIdentity) -> Result<Account, CoreError> {
        let base = external
            .name_hints
            .first()
            .cloned()
            .unwrap_or_else(|| "user".into());
        let mut name = base.clone();
        for _ in 0..8 {
            match self
                .store
                .create_account(&name, self.default_role(), None)
                .await
            {
                Ok(account) => return Ok(account),
                Err(StoreError::Conflict(StoreConflict::AccountNameTaken { .. })) => {
                    name = format!("{base}-{:04x}", rand::rng().next_u32() & 0xffff);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Conflict::NoFreeAccountName { base }.into())
    }

    /// A new web session for `account`.
    async fn open_session(&self, account: &Account) -> Result<String, CoreError> {
        let token = auth::new_token();
        let ttl_ms = self.config.auth.session_ttl_hours as i64 * 3_600_000;
        self.store
            .create_session(&auth::token_hash(&token), &account.id, now_ms() + ttl_ms)
            .await?;
        Ok(token)
    }

    /// Whether `identity` lets its owner log in on the web here.
    fn is_way_in(&self, identity: &IdentityRecord, has_password: bool) -> bool {
        if identity.platform == LOCAL_PLATFORM {
            has_password && self.config.auth.local_passwords
        } else {
            self.sso.can_log_in_with(&identity.platform)
        }
    }

    /// The identities of `account`.
    pub async fn identities(&self, account: &Account) -> Result<Vec<IdentityView>, CoreError> {
        let has_password = account.password_hash.is_some();
        Ok(self
            .store
            .identities_of(&account.id)
            .await?
            .into_iter()
            .map(|identity| IdentityView {
                can_log_in: self.is_way_in(&identity, has_password),
                identity,
            })
            .collect())
    }

    /// Unlinks identity `id` from `account`, unless it is the local login or the last
    /// way in. Another account's identity is "not found".
    pub async fn unlink_identity(&self, account: &Account, id: &str) -> Result<(), CoreError> {
        let has_password = account.password_hash.is_some();
        let mut local = false;
        let outcome = self
            .store
            .unlink_identity(&account.id, id, |target, rest| {
                local = target.platform == LOCAL_PLATFORM;
                !local && rest.iter().any(|i| self.is_way_in(i, has_password))
            })
            .await?;
        match outcome {
            None => Err(CoreError::NotFound("identity")),
            Some(true) => {
                tracing::info!(account = %account.id, identity = id, "identity unlinked");
                Ok(())
            }
            Some(false) if local => Err(SsoError::LocalIdentity.into()),
            Some(false) => Err(SsoError::LastWayIn.into()),
        }
    }
}
