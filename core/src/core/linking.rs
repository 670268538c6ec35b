//! Core's identity commands: link codes and merges, per-account API keys, and the
//! login guessing limit.

use super::{Core, CoreError, InvalidInput};
use crate::auth;
use crate::quota::{LINK_CODE_TTL_MS, LinkCode, MAX_ACTIVE_LINK_CODES};
use chorus_model::time::now_ms;
use chorus_store::{Account, ApiKeyInfo, ApiKeyScope, Identity, KeyedAccount, LinkOutcome};
use serde::Serialize;
use std::time::Duration;

/// A link code as shown once to the account that asked for it.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedLinkCode {
    /// `XXXX-XXXX`.
    pub code: String,
    pub expires_at: i64,
}

const WRONG_CODE: &str =
    "this link code is wrong, used or expired; codes work once, for 10 minutes";

impl Core {
    /// Issues a link code for `account` (the `link` command, `POST /api/link-codes`).
    pub async fn issue_link_code(&self, account: &Account) -> Result<IssuedLinkCode, CoreError> {
        let code = LinkCode::generate();
        let expires_at = now_ms() + LINK_CODE_TTL_MS;
        self.store
            .create_link_code(&account.id, &code.hash(), expires_at, MAX_ACTIVE_LINK_CODES)
            .await?;
        Ok(IssuedLinkCode {
            code: code.display(),
            expires_at,
        })
    }

    /// Redeems `code` for `identity`: the identity joins the issuing account, and its
    /// previous account (if any) is merged into it in one transaction. Wrong, used,
    /// expired and malformed codes give one error and count against the identity's
    /// guessing limit.
    pub async fn redeem_link_code(
        &self,
        identity: &Identity,
        code: &str,
    ) -> Result<LinkOutcome, CoreError> {
        let limits = &self.config.limits;
        let window = Duration::from_secs(limits.guess_window_secs);
        let key = format!("link:{}", identity.key());
        // The attempt takes its slot first (atomically), so parallel guesses cannot
        // all pass the check; a code that works gives it back.
        let Some(taken) = self
            .take_slot("link_code", &key, window, limits.link_code_failures as u64)
            .await?
        else {
            return Err(CoreError::RateLimited(format!(
                "too many wrong link codes; try again in {} minutes",
                limits.guess_window_secs.div_ceil(60)
            )));
        };
        let code = match LinkCode::parse(code) {
            Ok(code) => code,
            Err(e) => return Err(CoreError::InvalidLinkCode(e.to_string())),
        };
        let outcome = match self.store.redeem_link_code(&code.hash(), identity).await {
            Ok(outcome) => outcome,
            Err(chorus_store::StoreError::NotFound("link code")) => {
                return Err(CoreError::InvalidLinkCode(WRONG_CODE.to_string()));
            }
            Err(e) => {
                self.give_back(taken).await;
                return Err(e.into());
            }
        };
        self.give_back(taken).await;
        if let Some(from) = &outcome.merged_from {
            self.security_event(
                "link_merge",
                "account",
                Some(outcome.account_id.as_str()),
                serde_json::json!({"merged_from": from.as_str(), "identity": identity.key()}),
            )
            .await;
            // The merged account's conversations moved; their sandbox files follow.
            let workspaces = self.sandbox.workspaces();
            if let Err(e) = workspaces.adopt(from, &outcome.account_id).await {
                tracing::error!(error = %e, from = %from, to = %outcome.account_id,
                    "cannot move the sandbox workspaces of a merged account");
            }
        }
        Ok(outcome)
    }

    /// The role a new account gets unless told otherwise (`accounts.default_role`), for
    /// every path that creates accounts (CLI, SSO, first contact on a surface).
    pub fn default_role(&self) -> chorus_store::Role {
        if self.config.accounts.default_role == "admin" {
            chorus_store::Role::Admin
        } else {
            chorus_store::Role::User
        }
    }

    /// The account a surface identity belongs to, if it has one; a suspended
    /// account is refused with `Forbidden::AccountSuspended`.
    pub async fn account_for_identity(
        &self,
        identity: &Identity,
    ) -> Result<Option<Account>, CoreError> {
        let account = self
            .store
            .account_by_identity(&identity.platform, &identity.external_id)
            .await?;
        self.usable_account(account, &identity.platform).await
    }

    /// The `link` command of a chat surface: without an argument, issues a code for
    /// the identity's account; with one, redeems it. Returns the reply to post.
    pub async fn link_command(
        &self,
        identity: &Identity,
        code: Option<&str>,
    ) -> Result<String, CoreError> {
        match code.map(str::trim).filter(|c| !c.is_empty()) {
            None => {
                let account = self
                    .account_for_identity(identity)
                    .await?
                    .ok_or(CoreError::NotFound("account"))?;
                let issued = self.issue_link_code(&account).await?;
                Ok(format!(
                    "Your link code is {}. Within 10 minutes, send `link {}` from the other \
                     account (or enter it on the web) to join it to this one. It works once.",
                    issued.code, issued.code
                ))
            }
            Some(code) => {
                let outcome = self.redeem_link_code(identity, code).await?;
                Ok(match outcome.merged_from {
                    Some(_) => format!(
                        "Linked. Your previous account ({} conversations, {} credits) was merged into this one.",
                        outcome.conversations_moved,
                        crate::quota::fmt_credits(outcome.balance_moved)
                    ),
                    None => {
                        "Linked: this identity now uses the account that issued the code.".into()
                    }
                })
            }
        }
    }

    /// The `usage` command of a chat surface: balance and the last 30 days.
    pub(crate) async fn usage_command(&self, identity: &Identity) -> Result<String, CoreError> {
        let account = self
            .account_for_identity(identity)
            .await?
            .ok_or(CoreError::NotFound("account"))?;
        Ok(self.usage(&account, 30).await?.to_text())
    }

    // ---- API keys ----

    /// Creates an API key for `account` with `scopes` (`read`, `chat`); the key is
    /// returned once, stored hashed.
    pub async fn create_api_key(
        &self,
        account: &Account,
        name: &str,
        scopes: &[String],
    ) -> Result<(ApiKeyInfo, String), CoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(InvalidInput::KeyName.into());
        }
        if scopes.is_empty() || scopes.len() > 8 {
            return Err(InvalidInput::KeyScopes.into());
        }
        let scopes = scopes
            .iter()
            .map(|s| {
                ApiKeyScope::parse(s).ok_or_else(|| {
                    CoreError::from(InvalidInput::UnknownScope(s.chars().take(40).collect()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = auth::new_api_key();
        let prefix: String = key.chars().take(auth::API_KEY_PREFIX.len() + 6).collect();
        let info = self
            .store
            .create_scoped_api_key(&account.id, name, &auth::token_hash(&key), &prefix, &scopes)
            .await?;
        Ok((info, key))
    }

    pub async fn api_keys(&self, account: &Account) -> Result<Vec<ApiKeyInfo>, CoreError> {
        Ok(self.store.list_api_keys(&account.id).await?)
    }

    /// Revokes one of the account's keys; another account's key is "not found".
    pub async fn revoke_api_key(&self, account: &Account, id: &str) -> Result<(), CoreError> {
        if self.store.revoke_api_key(&account.id, id).await? {
            Ok(())
        } else {
            Err(CoreError::NotFound("API key"))
        }
    }

    /// The active account of an unrevoked API key, with the key's scopes.
    pub async fn api_key_account(&self, key: &str) -> Result<Option<KeyedAccount>, CoreError> {
        let Some(keyed) = self
            .store
            .account_by_api_key(&auth::token_hash(key))
            .await?
        else {
            return Ok(None);
        };
        let account = self
            .usable_account(Some(keyed.account.clone()), "API key")
            .await?;
        Ok(account.map(|_| keyed))
    }

    // ---- login guessing limit ----

    /// Checks a name and password; returns the account and a new session token.
    /// Failures are limited per account name and `client` address
    /// (`limits.login_failures`) and per account name alone, from any address
    /// (`limits.login_failures_per_account`), so passwords can be guessed neither at
    /// speed from one address nor from many. Each attempt takes its slot before the
    /// password is checked, atomically, so a parallel burst gets no more guesses than
    /// a sequence; a success (or a failure that is not a wrong password) gives the
    /// slots back.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client: &str,
    ) -> Result<(Account, String), CoreError> {
        // No account name is longer, so a longer one is refused before it becomes a
        // limiter key (the body may hold a megabyte of it).
        if name.len() > super::MAX_ACCOUNT_NAME_LEN {
            return Err(InvalidInput::LoginNameTooLong {
                max: super::MAX_ACCOUNT_NAME_LEN,
            }
            .into());
        }
        self.guess_limited(name, client, self.check_login(name, password))
            .await
    }

    /// Runs `attempt` (a password check of account `name`) within the login guessing
    /// limits of `name` and `client`: slots are taken before it, and given back unless
    /// it fails with [`CoreError::Unauthorized`] (a wrong password).
    pub(crate) async fn guess_limited<T>(
        &self,
        name: &str,
        client: &str,
        attempt: impl std::future::Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        let limits = &self.config.limits;
        let window = Duration::from_secs(limits.guess_window_secs);
        let name_key = name.to_lowercase();
        let limited = || {
            CoreError::RateLimited(format!(
                "too many failed logins for this name; try again in {} minutes",
                limits.guess_window_secs.div_ceil(60)
            ))
        };
        // A lockout is a security event, written when the limit refuses.
        let refused = || {
            let name = name.to_string();
            let client = client.to_string();
            async move {
                self.security_event(
                    "login_locked",
                    "account_name",
                    Some(&name),
                    serde_json::json!({"client": client}),
                )
                .await;
                limited()
            }
        };
        let Some(by_address) = self
            .take_slot(
                "login",
                &format!("login:{name_key}:{client}"),
                window,
                limits.login_failures as u64,
            )
            .await?
        else {
            return Err(refused().await);
        };
        let by_account = match self
            .take_slot(
                "login",
                &format!("login-account:{name_key}"),
                window,
                limits.login_failures_per_account as u64,
            )
            .await
        {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                self.give_back(by_address).await;
                return Err(refused().await);
            }
            Err(e) => {
                self.give_back(by_address).await;
                return Err(e);
            }
        };
        let result = attempt.await;
        if matches!(result, Err(CoreError::Unauthorized)) {
            self.security_event(
                "login_failed",
                "account_name",
                Some(name),
                serde_json::json!({"client": client}),
            )
            .await;
        } else {
            self.give_back(by_address).await;
            self.give_back(by_account).await;
        }
        result
    }

    /// Takes a slot of a guessing limit: `None` when the limit is reached. When the
    /// counter store fails, `limits.on_store_error` decides (through
    /// [`Core::limit_store_failed`]): refused, or let through uncounted.
    async fn take_slot(
        &self,
        limit: &'static str,
        key: &str,
        window: Duration,
        max: u64,
    ) -> Result<Option<Slot>, CoreError> {
        match self.limiter.take(key, window, max).await {
            Ok(Some(taken)) => Ok(Some(Slot::Taken(taken))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.limit_store_failed(limit, e)?;
                Ok(Some(Slot::Uncounted))
            }
        }
    }

    /// Releases a guessing-limit slot that turned out not to be a failed guess.
    async fn give_back(&self, slot: Slot) {
        if let Slot::Taken(taken) = slot
            && let Err(e) = self.limiter.release(taken).await
        {
            tracing::warn!(error = %e, "cannot release a guessing-limit slot");
        }
    }
}

/// A slot of a guessing limit held by one attempt.
enum Slot {
    /// Counted: given back when the attempt was not a wrong guess.
    Taken(crate::quota::Taken),
    /// Not counted: the counter store failed and `limits.on_store_error` allows it.
    Uncounted,
}
