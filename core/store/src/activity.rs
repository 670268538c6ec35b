//! When this instance last wrote each account's "last activity", so that a new turn
//! on PostgreSQL does not spend a round trip on an `UPDATE` that, within the minute,
//! changes nothing.
//!
//! The admin console shows an account's last activity to the minute
//! (`accounts.last_active_at`). A turn's transaction used to begin with the
//! conditional `UPDATE` that keeps it, a statement of its own before the account's
//! shared lock (after it, two admissions upgrading their shared locks could
//! deadlock). Now an instance writes it at most once a minute per account; with
//! several instances each does, and the statement's own condition still keeps the
//! column to the minute. A write that fails after it was marked leaves the column up
//! to a minute staler, never wrong by more.

use chorus_model::ids::AccountId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How long a written last activity stays good enough, in milliseconds.
pub(crate) const ACTIVITY_RESOLUTION_MS: i64 = 60_000;

/// Above this many marked accounts, a new mark first drops the stale ones.
const PRUNE_ABOVE: usize = 4096;

/// Account id → when this instance last wrote its last activity (Unix ms).
#[derive(Default)]
pub(crate) struct ActivityMarks {
    written: Mutex<HashMap<String, i64>>,
}

impl ActivityMarks {
    /// Whether `account`'s last activity is due to be written at `now` (this instance
    /// has not written it in the minute before); if so, marks it written.
    pub(crate) fn due(&self, account: &AccountId, now: i64) -> bool {
        let fresh_after = now - ACTIVITY_RESOLUTION_MS;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written
            .get(account.as_str())
            .is_some_and(|&at| at > fresh_after)
        {
            return false;
        }
        if written.len() >= PRUNE_ABOVE {
            written.retain(|_, at| *at > fresh_after);
        }
        written.insert(account.as_str().to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_due_once_a_minute() {
        let marks = ActivityMarks::default();
        let (a, b) = (AccountId::generate(), AccountId::generate());
        assert!(marks.due(&a, 1_000_000));
        assert!(!marks.due(&a, 1_000_000 + 59_999));
        assert!(marks.due(&b, 1_000_000 + 59_999), "each account apart");
        assert!(marks.due(&a, 1_000_000 + 60_001));
    }

    #[test]
    fn stale_marks_are_dropped_when_many() {
        let marks = ActivityMarks::default();
        for _ in 0..PRUNE_ABOVE {
            assert!(marks.due(&AccountId::generate(), 0));
        }
        assert!(marks.due(&AccountId::generate(), 2 * ACTIVITY_RESOLUTION_MS));
        let held = marks.written.lock().unwrap().len();
        assert_eq!(held, 1, "the stale ones went, the new one stays");
    }
}
