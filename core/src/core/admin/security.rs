//! Security events (failed logins, lockouts, link-code merges, a suspended account's
//! attempts) written to the audit log, and the one check that refuses a suspended
//! account on every surface with a message that says so.

use crate::core::{Core, CoreError, Forbidden};
use chorus_model::Account;
use chorus_store::{Actor, AuditKind, Change};
use serde_json::Value;

impl Core {
    /// Writes a security event. A failure to write it is logged, never the caller's
    /// failure: a login must not fail because the audit log could not be written.
    pub(crate) async fn security_event(
        &self,
        action: &str,
        object_type: &str,
        object_id: Option<&str>,
        detail: Value,
    ) {
        let actor = Actor::system();
        let change = Change {
            kind: AuditKind::Security,
            actor: &actor,
            action,
            object_type,
            object_id,
            before: Value::Null,
            after: detail,
        };
        if let Err(e) = self.store.record_event(&change).await {
            tracing::warn!(error = %e, action, "cannot write a security event");
        }
    }

    /// The account a surface resolved, as the surface may use it: a suspended one is
    /// refused (`Forbidden::AccountSuspended`, recorded as a security event), any
    /// other inactive one (a merged tombstone) is no account.
    pub(crate) async fn usable_account(
        &self,
        account: Option<Account>,
        via: &str,
    ) -> Result<Option<Account>, CoreError> {
        match account {
            Some(a) if a.is_suspended() => {
                self.security_event(
                    "suspended_attempt",
                    "account",
                    Some(a.id.as_str()),
                    serde_json::json!({"name": a.name, "via": via}),
                )
                .await;
                Err(Forbidden::AccountSuspended.into())
            }
            other => Ok(other.filter(Account::is_active)),
        }
    }
}
