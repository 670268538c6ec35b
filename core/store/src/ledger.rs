//! Balances and the append-only ledger.
//!
//! Invariant: an account's `balance` equals the sum of its ledger rows. Every change
//! of a balance is one `UPDATE accounts SET balance = balance + x` and one ledger row
//! of `x` in the same transaction, and ledger rows are never updated or deleted. A run
//! is charged in the transaction that ends it, at most once (`ledger.run_id` is
//! unique).

use super::{Backend, Store, StoreError};
use crate::Tx;
use chorus_model::ids::{AccountId, RunId};
use chorus_model::money::{Charge, Refusal};
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;

/// Why a ledger row exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerReason {
    /// What a new account starts with.
    Initial,
    /// A run's usage (negative).
    RunUsage,
    /// An admin's grant (or deduction).
    Grant,
    /// An automatic refill.
    Refill,
    /// The balance of an account merged into another: out of the old, into the new.
    Merge,
}

impl LedgerReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerReason::Initial => "initial",
            LedgerReason::RunUsage => "run_usage",
            LedgerReason::Grant => "grant",
            LedgerReason::Refill => "refill",
            LedgerReason::Merge => "merge",
        }
    }
}

/// One ledger row.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerEntry {
    pub id: String,
    pub account_id: AccountId,
    /// Micro-credits; negative for debits.
    pub amount: i64,
    pub reason: String,
    pub run_id: Option<RunId>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_prompt_tokens: Option<i64>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// What a new run must satisfy, checked in the transaction that creates it while the
/// account's row is locked, so concurrent starts of one account are decided one at a
/// time (on every instance: the lock is in the database).
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Refuse when the balance is at or below zero, or does not cover `reservation`
    /// beside what the account's active runs hold.
    pub enforce_balance: bool,
    /// Micro-credits the run holds while it is active (its estimated prompt and
    /// longest answer at the model's price), kept on its row: ending the run (charged
    /// its actual usage in the same transaction) releases it.
    pub reservation: i64,
    /// Estimated prompt tokens, kept on the run to charge it if it ends without usage.
    pub prompt_estimate: i64,
    /// Most runs of the account streaming at once; 0 = no limit.
    pub max_concurrent_runs: u32,
}

impl Admission {
    /// Whether the balance or the account's active runs decide it (otherwise only the
    /// account's being active does).
    pub fn decides(&self) -> bool {
        (self.enforce_balance && self.reservation != 0) || self.max_concurrent_runs > 0
    }
}

/// The decision of an admission that [`Admission::decides`], from the account's
/// `balance` and its active runs (`running` of them, holding `held`), all read while
/// no other admission of the account can change them.
pub(crate) fn check_admission(
    admission: &Admission,
    balance: i64,
    running: i64,
    held: i64,
) -> Result<(), StoreError> {
    if admission.max_concurrent_runs > 0 && running >= i64::from(admission.max_concurrent_runs) {
        return Err(StoreError::Refused(Refusal::TooManyRuns { running }));
    }
    if admission.enforce_balance {
        chorus_model::money::check_balance(balance, held, admission.reservation)
            .map_err(StoreError::Refused)?;
    }
    Ok(())
}

/// Usage of one day or one model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageBucket {
    /// `YYYY-MM-DD` (UTC) or the model reference.
    pub key: String,
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    /// Micro-credits charged.
    pub cost: i64,
}

/// Locks the account's row until the transaction ends and returns its balance, or
/// `None` when it is not active (unknown, banned, merged).
pub(crate) async fn lock_account(
    tx: &mut Tx,
    account: &AccountId,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "UPDATE accounts SET balance = balance WHERE id = $1 AND status = 'active' RETURNING balance",
    )
    .bind(account.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.try_get("balance")).transpose()?)
}

/// Adds `amount` to the balance and writes its ledger row. The caller holds the
/// transaction; the two always commit together.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn post(
    tx: &mut Tx,
    account: &AccountId,
    amount: i64,
    reason: LedgerReason,
    run: Option<&RunId>,
    charge: Option<&Charge>,
    note: Option<&str>,
) -> Result<bool, StoreError> {
    if !insert_row(tx, account, amount, reason, run, charge, note).await? {
        return Ok(false); // this run was charged already
    }
    sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
        .bind(amount)
        .bind(account.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Writes a ledger row; false when the run it charges was charged already.
#[allow(clippy::too_many_arguments)]
async fn insert_row(
    tx: &mut Tx,
    account: &AccountId,
    amount: i64,
    reason: LedgerReason,
    run: Option<&RunId>,
    charge: Option<&Charge>,
    note: Option<&str>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO ledger (id, account_id, amount, reason, run_id, model, prompt_tokens, completion_tokens, \
         cached_prompt_tokens, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(account.as_str())
    .bind(amount)
    .bind(reason.as_str())
    .bind(run.map(RunId::as_str))
    .bind(charge.map(|c| c.model.as_str()))
    .bind(charge.map(|c| c.tokens.prompt))
    .bind(charge.map(|c| c.tokens.completion))
    .bind(charge.map(|c| c.tokens.cached_prompt))
    .bind(note)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() != 0)
}

/// Charges a run that just ended (in the transaction that ended it), once: its ledger
/// row, then the balance and the running total the console sorts accounts by
/// (`spent`) in one statement.
pub(crate) async fn charge_run(
    tx: &mut Tx,
    account: &AccountId,
    run: &RunId,
    charge: &Charge,
) -> Result<(), StoreError> {
    let charged = insert_row(
        tx,
        account,
        -charge.amount,
        LedgerReason::RunUsage,
        Some(run),
        Some(charge),
        None,
    )
    .await?;
    if charged {
        sqlx::query("UPDATE accounts SET balance = balance - $1, spent = spent + $1 WHERE id = $2")
            .bind(charge.amount)
            .bind(account.as_str())
            .execute(&mut **tx)
            .await?;
    } else {
        tracing::warn!(run = %run, "run was already charged; not charging it twice");
    }
    Ok(())
}

/// Writes `account`'s "last activity" (to the minute: only when older than a minute)
/// without locking anything else. On PostgreSQL it must come before the account's
/// shared lock in the same transaction: two admissions upgrading their shared locks
/// to write it could deadlock.
pub(crate) async fn touch_last_activity(
    tx: &mut Tx,
    account: &AccountId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE accounts SET last_active_at = $1 \
         WHERE id = $2 AND (last_active_at IS NULL OR last_active_at < $3)",
    )
    .bind(now)
    .bind(account.as_str())
    .bind(now - crate::activity::ACTIVITY_RESOLUTION_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Decides whether a run may start; the account row is locked by the caller's
/// transaction, so the decision holds until the run row is written.
///
/// An admission that decides nothing from the balance or the account's runs (a run
/// that costs nothing, no concurrency limit) only needs the account to stay active
/// until the run row is written: on PostgreSQL it takes a shared lock
/// (`FOR SHARE`), so a burst of one account's free runs is admitted in parallel
/// instead of one commit after another, while bans, merges and charges (which lock
/// the row exclusively) still wait for it. On SQLite the write transaction excludes
/// every other writer anyway.
///
/// `touch_activity`: whether the account's last activity is due from this instance
/// ([`Store::activity_due`](crate::Store::activity_due)); only the PostgreSQL
/// admission that decides nothing writes it apart, the others in their own statement.
pub(crate) async fn admit(
    tx: &mut Tx,
    backend: Backend,
    account: &AccountId,
    admission: &Admission,
    touch_activity: bool,
) -> Result<(), StoreError> {
    let decides = admission.decides();
    if !decides && backend == Backend::Sqlite {
        // The write transaction excludes every other writer: the check and the
        // console's "last activity" (to the minute) in one statement.
        let now = now_ms();
        return match sqlx::query(
            "UPDATE accounts SET last_active_at = CASE \
             WHEN last_active_at IS NULL OR last_active_at < $1 THEN $2 ELSE last_active_at END \
             WHERE id = $3 AND status = 'active' RETURNING id",
        )
        .bind(now - 60_000)
        .bind(now)
        .bind(account.as_str())
        .fetch_optional(&mut **tx)
        .await?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("account")),
        };
    }
    if !decides {
        // The console's "last activity", to the minute: an instance writes it at most
        // once a minute per account, and a burst of free runs once. It comes before the shared lock, as two admissions upgrading their
        // shared locks to write it could deadlock; a second one finds it fresh after
        // the first commits and skips without locking.
        if touch_activity {
            touch_last_activity(tx, account, now_ms()).await?;
        }
        return match sqlx::query(
            "SELECT id FROM accounts WHERE id = $1 AND status = 'active' FOR SHARE",
        )
        .bind(account.as_str())
        .fetch_optional(&mut **tx)
        .await?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("account")),
        };
    }
    // Locks the row (as `lock_account`) while writing the console's "last activity".
    let balance: i64 = sqlx::query(
        "UPDATE accounts SET last_active_at = $1 WHERE id = $2 AND status = 'active' RETURNING balance",
    )
    .bind(now_ms())
    .bind(account.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("account"))?
    .try_get("balance")?;
    let running = if admission.max_concurrent_runs > 0 {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM runs WHERE account_id = $1 AND status IN ('queued', 'streaming')",
        )
        .bind(account.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?
    } else {
        0
    };
    let held = if admission.enforce_balance {
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) AS held FROM runs \
             WHERE account_id = $1 AND status IN ('queued', 'streaming')",
        )
        .bind(account.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get("held")?
    } else {
        0
    };
    check_admission(admission, balance, running, held)
}

/// Rows of the ledger in `account_id IN (account and the tombstones merged into it)`.
const OWN_AND_MERGED: &str =
    "account_id IN (SELECT id FROM accounts WHERE id = $1 OR merged_into = $1)";

impl Store {
    /// The account's balance in micro-credits.
    pub async fn balance(&self, account: &AccountId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT balance FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        Ok(row.try_get("balance")?)
    }

    /// The account's balance (micro-credits) and its own auto-refill amount and
    /// interval in seconds (`None`: the `[quota]` default), in one read of its row.
    pub async fn balance_and_refill(
        &self,
        account: &AccountId,
    ) -> Result<(i64, Option<i64>, Option<i64>), StoreError> {
        let row = sqlx::query(
            "SELECT balance, refill_amount, refill_interval_secs FROM accounts WHERE id = $1",
        )
        .bind(account.as_str())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        Ok((
            row.try_get("balance")?,
            row.try_get("refill_amount")?,
            row.try_get("refill_interval_secs")?,
        ))
    }

    /// The sum of the account's own ledger rows (equal to its balance, always).
    pub async fn ledger_sum(&self, account: &AccountId) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM ledger WHERE account_id = $1",
        )
        .bind(account.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("total")?)
    }

    /// The account's newest ledger rows, its merged tombstones' included.
    pub async fn ledger(
        &self,
        account: &AccountId,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.ledger_page(account, 0, limit).await
    }

    /// A page of the account's ledger, newest first, skipping `offset` rows.
    pub async fn ledger_page(
        &self,
        account: &AccountId,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let sql = format!(
            "SELECT id, account_id, amount, reason, run_id, model, prompt_tokens, completion_tokens, \
             cached_prompt_tokens, note, created_at FROM ledger WHERE {OWN_AND_MERGED} \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(limit)
            .bind(offset.max(0))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    id: r.try_get("id")?,
                    account_id: AccountId::from_stored(r.try_get("account_id")?),
                    amount: r.try_get("amount")?,
                    reason: r.try_get("reason")?,
                    run_id: r
                        .try_get::<Option<String>, _>("run_id")?
                        .map(RunId::from_stored),
                    model: r.try_get("model")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cached_prompt_tokens: r.try_get("cached_prompt_tokens")?,
                    note: r.try_get("note")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds `amount` micro-credits (negative to deduct) to an active account with a
    /// ledger row of `reason`; returns the new balance.
    pub async fn credit(
        &self,
        account: &AccountId,
        amount: i64,
        reason: LedgerReason,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let balance = lock_account(&mut tx, account)
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        post(&mut tx, account, amount, reason, None, None, note).await?;
        tx.commit().await?;
        Ok(balance + amount)
    }

    /// Adds `amount` if no refill happened in the last `interval_ms`; returns the new
    /// balance when it refilled. Concurrent callers refill once.
    pub async fn refill_if_due(
        &self,
        account: &AccountId,
        amount: i64,
        interval_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE accounts SET refilled_at = $1 WHERE id = $2 AND status = 'active' \
             AND (refilled_at IS NULL OR refilled_at <= $3) RETURNING balance",
        )
        .bind(now)
        .bind(account.as_str())
        .bind(now - interval_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let balance: i64 = row.try_get("balance")?;
        post(
            &mut tx,
            account,
            amount,
            LedgerReason::Refill,
            None,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(balance + amount))
    }

    /// The net change of the balance (every ledger row: usage, grants, refills,
    /// merges) per UTC day since `since` (Unix ms), as (day number since the epoch,
    /// micro-credits), oldest first; days without rows are left out. With the balance
    /// now it gives the balance at the end of each day, from one indexed query.
    pub async fn net_by_day(
        &self,
        account: &AccountId,
        since: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = format!(
            "SELECT created_at / 86400000 AS d, CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS net \
             FROM ledger WHERE {OWN_AND_MERGED} AND created_at >= $2 GROUP BY created_at / 86400000 ORDER BY 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(since)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| Ok((r.try_get("d")?, r.try_get("net")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Usage since `since` (Unix ms) per UTC day and per model, from the run rows of
    /// the ledger (the account's and its merged tombstones').
    pub async fn usage(
        &self,
        account: &AccountId,
        since: i64,
    ) -> Result<(Vec<UsageBucket>, Vec<UsageBucket>), StoreError> {
        let query = |group: &str| {
            format!(
                "SELECT {group} AS k, COUNT(*) AS runs, \
                 CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
                 CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS c, \
                 CAST(COALESCE(SUM(cached_prompt_tokens), 0) AS BIGINT) AS cp, \
                 CAST(COALESCE(SUM(-amount), 0) AS BIGINT) AS cost \
                 FROM ledger WHERE {OWN_AND_MERGED} AND reason = 'run_usage' AND created_at >= $2 \
                 GROUP BY {group} ORDER BY 1"
            )
        };
        let bucket = |r: &sqlx::any::AnyRow, key: String| -> Result<UsageBucket, sqlx::Error> {
            Ok(UsageBucket {
                key,
                runs: r.try_get("runs")?,
                prompt_tokens: r.try_get("p")?,
                completion_tokens: r.try_get("c")?,
                cached_prompt_tokens: r.try_get("cp")?,
                cost: r.try_get("cost")?,
            })
        };
        let days = sqlx::query(sqlx::AssertSqlSafe(query("created_at / 86400000")))
            .bind(account.as_str())
            .bind(since)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                let day: i64 = r.try_get("k")?;
                bucket(r, utc_date(day))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let models = sqlx::query(sqlx::AssertSqlSafe(query("COALESCE(model, '')")))
            .bind(account.as_str())
            .bind(since)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                let model: String = r.try_get("k")?;
                bucket(r, model)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((days, models))
    }
}

/// `YYYY-MM-DD` of a day number since the Unix epoch (proleptic Gregorian, UTC).
pub fn utc_date(days_since_epoch: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn days_become_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(19_723), "2024-01-01");
        assert_eq!(utc_date(19_782), "2024-02-29");
        assert_eq!(utc_date(20_417), "2025-11-25");
    }
}
