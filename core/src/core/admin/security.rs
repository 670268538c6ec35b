//! Security events (failed logins, lockouts, link-code merges, a suspended account's
//! attempts) written to the audit log, and the one check that refuses a suspended
//! account on every surface with a message that says so.

use crate::core::{Core, CoreError, Forbidden};
use chorus_model::Account;
use chorus_model::ids::AccountId;
use chorus_store::{Actor, AuditKind, Change};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often one account's attempts through one way in are written, at most.
const ATTEMPT_ROW_EVERY: Duration = Duration::from_secs(60);
/// Past this many tracked keys, the ones written more than a period ago are dropped.
const ATTEMPT_KEYS_PRUNED_AT: usize = 10_000;

/// Coalesces a suspended account's attempts: a client retrying in a loop would
/// otherwise write one audit row per request. Each (account, way in) gets a row at
/// its first attempt, then at most one a minute, carrying how many attempts it
/// stands for. Per instance: each instance of a deployment writes its own rows.
#[derive(Default)]
pub(crate) struct AttemptCoalescer {
    seen: Mutex<HashMap<(AccountId, String), Pending>>,
}

struct Pending {
    written_at: Instant,
    /// Attempts since that row, not yet in any row.
    unwritten: u64,
}

impl AttemptCoalescer {
    /// Whether an attempt at `now` is due a row, and how many attempts that row
    /// stands for (this one and those coalesced since the last row).
    pub(crate) fn due(&self, account: &AccountId, via: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= ATTEMPT_KEYS_PRUNED_AT {
            seen.retain(|_, p| now.duration_since(p.written_at) < ATTEMPT_ROW_EVERY);
        }
        match seen.get_mut(&(account.clone(), via.to_string())) {
            Some(p) if now.duration_since(p.written_at) < ATTEMPT_ROW_EVERY => {
                p.unwritten += 1;
                None
            }
            Some(p) => {
                let attempts = p.unwritten + 1;
                *p = Pending {
                    written_at: now,
                    unwritten: 0,
                };
                Some(attempts)
            }
            None => {
                seen.insert(
                    (account.clone(), via.to_string()),
                    Pending {
                        written_at: now,
                        unwritten: 0,
                    },
                );
                Some(1)
            }
        }
    }
}

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
    /// refused (`Forbidden::AccountSuspended`, recorded as a security event, coalesced
    /// by [`AttemptCoalescer`]), any other inactive one (a merged tombstone) is no
    /// account.
    pub(crate) async fn usable_account(
        &self,
        account: Option<Account>,
        via: &str,
    ) -> Result<Option<Account>, CoreError> {
        match account {
            Some(a) if a.is_suspended() => {
                let due = self.suspended_attempts.due(&a.id, via, Instant::now());
                if let Some(attempts) = due {
                    self.security_event(
                        "suspended_attempt",
                        "account",
                        Some(a.id.as_str()),
                        serde_json::json!({"name": a.name, "via": via, "attempts": attempts}),
                    )
                    .await;
                }
                Err(Forbidden::AccountSuspended.into())
            }
            other => Ok(other.filter(Account::is_active)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_written_once_a_minute_per_account_and_way_in() {
        let coalescer = AttemptCoalescer::default();
        let carol = AccountId::generate();
        let dave = AccountId::generate();
        let t0 = Instant::now();
        assert_eq!(coalescer.due(&carol, "API key", t0), Some(1));
        for s in 1..=30 {
            assert_eq!(
                coalescer.due(&carol, "API key", t0 + Duration::from_secs(s)),
                None
            );
        }
        // Another way in, another account: their own first rows.
        assert_eq!(coalescer.due(&carol, "web session", t0), Some(1));
        assert_eq!(coalescer.due(&dave, "API key", t0), Some(1));
        // A minute on, the next row stands for the 30 coalesced attempts and itself.
        assert_eq!(
            coalescer.due(&carol, "API key", t0 + ATTEMPT_ROW_EVERY),
            Some(31)
        );
        assert_eq!(
            coalescer.due(&carol, "API key", t0 + ATTEMPT_ROW_EVERY),
            None
        );
        let later = t0 + 3 * ATTEMPT_ROW_EVERY;
        assert_eq!(coalescer.due(&carol, "API key", later), Some(2));
    }

    #[test]
    fn stale_keys_are_pruned_when_many_are_tracked() {
        let coalescer = AttemptCoalescer::default();
        let t0 = Instant::now();
        for _ in 0..ATTEMPT_KEYS_PRUNED_AT {
            coalescer.due(&AccountId::generate(), "API key", t0);
        }
        let fresh = AccountId::generate();
        coalescer.due(&fresh, "API key", t0 + 2 * ATTEMPT_ROW_EVERY);
        let seen = coalescer.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "only the fresh key is left");
    }
}
