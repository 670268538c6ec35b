//! Core's session commands: changing a password (which ends the account's other
//! sessions), signing out everywhere, and the purge of expired sessions.

use super::{Core, CoreError};
use crate::auth;
use chorus_model::time::now_ms;
use chorus_store::{Account, SessionInfo, Store};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often expired sessions and SSO flows are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

impl Core {
    /// Sets a new password for `account`. When it has one, `current` must be it: a
    /// wrong one is a failed login of the account's name from `client`, limited alike.
    /// Every other session of the account ends (`keep_session` is the one asking);
    /// returns how many did.
    pub async fn change_password(
        &self,
        account: &Account,
        current: &str,
        new: &str,
        client: &str,
        keep_session: Option<&str>,
    ) -> Result<u64, CoreError> {
        if let Some(stored) = account.password_hash.clone() {
            let current = current.to_string();
            let check = async {
                let ok = self
                    .hashing
                    .run(move || auth::verify_password(&current, &stored))
                    .await
                    .map_err(|e| match e {
                        auth::GateError::Busy => CoreError::RateLimited(e.to_string()),
                        auth::GateError::Failed(m) => auth::AuthError::Hash(m).into(),
                    })?;
                if ok {
                    Ok(())
                } else {
                    Err(CoreError::Unauthorized)
                }
            };
            self.guess_limited(&account.name, client, check).await?;
        }
        let hash = self.hash_password(new).await?;
        let keep = keep_session.map(auth::token_hash);
        let ended = self
            .store
            .set_password(&account.id, &hash, keep.as_deref())
            .await?;
        tracing::info!(account = %account.id, sessions_ended = ended, "password changed");
        Ok(ended)
    }

    /// The account's unexpired web sessions, newest first, the one of
    /// `current_token` (the caller's) marked.
    pub async fn sessions(
        &self,
        account: &Account,
        current_token: Option<&str>,
    ) -> Result<Vec<SessionInfo>, CoreError> {
        let current = current_token.map(auth::token_hash);
        Ok(self
            .store
            .sessions_of(&account.id, current.as_deref())
            .await?)
    }

    /// Ends one web session of `account` by its public id (another account's
    /// session is not found).
    pub async fn revoke_session(&self, account: &Account, id: &str) -> Result<(), CoreError> {
        self.store.delete_account_session(&account.id, id).await?;
        tracing::info!(account = %account.id, session = id, "session ended by its owner");
        Ok(())
    }

    /// Ends every web session of `account`, the caller's included ("sign out
    /// everywhere"); returns how many. API keys are not sessions and stay.
    pub async fn revoke_sessions(&self, account: &Account) -> Result<u64, CoreError> {
        let ended = self.store.delete_sessions_of(&account.id).await?;
        tracing::info!(account = %account.id, sessions_ended = ended, "signed out everywhere");
        Ok(ended)
    }
}

/// Deletes expired sessions and SSO flows now and then every [`PURGE_EVERY`], until
/// `stop`. Expired rows already log nobody in; this keeps the tables small.
pub(super) async fn purge_expired_forever(store: Store, stop: CancellationToken) {
    loop {
        match store.purge_expired_sessions(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions purged"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired sessions"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}
