//! A run's end: its status, text, rollup and charge in one write, and the end of runs
//! whose instance died (orphans).

use super::{Run, RunOutcome};
use crate::Tx;
use crate::group_commit::{Apply, shared_write};
use crate::ledger::charge_run;
use crate::stats::{HOUR_MS, MINUTE_MS, record_run_end, run_end_buckets, run_shard};
use crate::{Backend, Store, StoreError};
use chorus_model::ids::{AccountId, RunId};
use chorus_model::money::Charge;
use chorus_model::time::now_ms;
use futures::future::BoxFuture;
use sqlx::Row;

pub use chorus_model::run::RunStatus;

/// A run's end on SQLite, several statements each of which writes only when the one
/// before it did (`changes()` is the row count of the statement before): the run's
/// row (`$11`, if still active and `$12`'s; it returns `ended`), its message's text,
/// the rollup's minute and hour rows (`$13`..`$21`).
macro_rules! finish_sqlite_sql {
    () => {
        "UPDATE runs SET status = $1, text = $2, checkpoint_seq = $3, finish_reason = $4, error = $5, \
         prompt_tokens = $6, completion_tokens = $7, cached_prompt_tokens = $8, reasoning_tokens = $9, \
         updated_at = $10, finished_at = $10, lease_expires_at = NULL \
         WHERE id = $11 AND lease_owner = $12 AND status IN ('queued', 'streaming') RETURNING 'ended' AS what; \
         UPDATE messages SET content = content || $2 \
         WHERE id = (SELECT message_id FROM runs WHERE id = $11) AND changes() = 1; \
         INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         SELECT column1, column2, $17, 1, $18, $19, $20, $21 FROM (VALUES ($13, $14), ($15, $16)) \
         WHERE changes() = 1 \
         ON CONFLICT (span, bucket, shard) DO UPDATE SET \
         replies = run_stats.replies + excluded.replies, failed = run_stats.failed + excluded.failed, \
         prompt_tokens = run_stats.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = run_stats.completion_tokens + excluded.completion_tokens, \
         cost = run_stats.cost + excluded.cost"
    };
}

/// The charge of a run's end on SQLite, after [`finish_sqlite_sql`] (whose rollup
/// statement wrote 2 rows when the run ended): its ledger row `$22` (returning
/// `charged`; none when the run was charged already), then the balance, only if that
/// row is there.
macro_rules! charge_sqlite_sql {
    () => {
        "INSERT INTO ledger (id, account_id, amount, reason, run_id, model, prompt_tokens, completion_tokens, \
         cached_prompt_tokens, note, created_at) \
         SELECT $22, account_id, -$23, 'run_usage', $11, $24, $25, $26, $27, NULL, $10 FROM runs \
         WHERE id = $11 AND changes() = 2 \
         ON CONFLICT (run_id) DO NOTHING RETURNING 'charged' AS what; \
         UPDATE accounts SET balance = balance - $23, spent = spent + $23 \
         WHERE id = (SELECT account_id FROM ledger WHERE id = $22)"
    };
}

/// A run's end on PostgreSQL, the `WITH` clauses of one statement: the run's row
/// (`r`), its message's text and the rollup's rows, each written from `r`'s row, so
/// not at all when the run was not ours to end.
macro_rules! finish_postgres_sql {
    () => {
        "WITH r AS (UPDATE runs SET status = $1, text = $2, checkpoint_seq = $3, finish_reason = $4, error = $5, \
         prompt_tokens = $6, completion_tokens = $7, cached_prompt_tokens = $8, reasoning_tokens = $9, \
         updated_at = $10, finished_at = $10, lease_expires_at = NULL \
         WHERE id = $11 AND lease_owner = $12 AND status IN ('queued', 'streaming') \
         RETURNING message_id, account_id), \
         m AS (UPDATE messages SET content = messages.content || $2 FROM r WHERE messages.id = r.message_id), \
         s AS (INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         SELECT v.span, v.bucket, $17, 1, $18, $19, $20, $21 FROM r, (VALUES ($13, $14), ($15, $16)) AS v(span, bucket) \
         ON CONFLICT (span, bucket, shard) DO UPDATE SET \
         replies = run_stats.replies + excluded.replies, failed = run_stats.failed + excluded.failed, \
         prompt_tokens = run_stats.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = run_stats.completion_tokens + excluded.completion_tokens, \
         cost = run_stats.cost + excluded.cost)"
    };
}

impl Store {
    /// Ends an active run held by `owner` and appends its text to the message, in
    /// one transaction. Returns false when the run was no longer this owner's to end.
    pub async fn finish_run(
        &self,
        id: &RunId,
        owner: &str,
        outcome: &RunOutcome,
    ) -> Result<bool, StoreError> {
        self.finish_run_charged(id, owner, outcome, None).await
    }

    /// [`Store::finish_run`] that also charges the run's usage to its account, in the
    /// same transaction: a run that ends is charged exactly once.
    pub async fn finish_run_charged(
        &self,
        id: &RunId,
        owner: &str,
        outcome: &RunOutcome,
        charge: Option<&Charge>,
    ) -> Result<bool, StoreError> {
        self.finish_run_queued(id, owner, outcome.clone(), charge.cloned())
            .await
    }

    /// [`Store::finish_run_charged`], queued when this call returns where writes are
    /// ordered ([`Store::orders_writes`]): every write queued after it (the next
    /// admission of the same account) sees the run ended and charged.
    pub fn finish_run_queued(
        &self,
        id: &RunId,
        owner: &str,
        outcome: RunOutcome,
        charge: Option<Charge>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        self.write_queued(shared_write(FinishWrite {
            id: id.clone(),
            owner: owner.to_string(),
            outcome,
            charge,
            backend: self.backend(),
        }))
    }

    /// Marks an orphaned run interrupted with `text` (its checkpoint, or more if the
    /// journal had more), if it is still orphaned: the lease is unchanged since it was
    /// read. Returns whether this call did it.
    pub async fn interrupt_orphan(
        &self,
        run: &Run,
        text: &str,
        seq: i64,
    ) -> Result<bool, StoreError> {
        self.interrupt_orphan_charged(run, text, seq, None).await
    }

    /// [`Store::interrupt_orphan`] that also charges the run, in the same transaction.
    pub async fn interrupt_orphan_charged(
        &self,
        run: &Run,
        text: &str,
        seq: i64,
        charge: Option<&Charge>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        lock_run_account(&mut tx, self.backend(), &run.id).await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET status = 'interrupted', text = $1, checkpoint_seq = $2, finish_reason = 'interrupted', \
             updated_at = $3, finished_at = $3, lease_expires_at = NULL \
             WHERE id = $4 AND status IN ('queued', 'streaming') AND lease_owner = $5 AND lease_expires_at = $6 \
             RETURNING account_id",
        )
        .bind(text)
        .bind(seq)
        .bind(now)
        .bind(run.id.as_str())
        .bind(run.lease_owner.as_deref())
        .bind(run.lease_expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            return Ok(false);
        };
        let account = AccountId::from_stored(row.try_get("account_id")?);
        sqlx::query("UPDATE messages SET content = content || $1 WHERE id = $2")
            .bind(text)
            .bind(run.message_id.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(charge) = charge {
            charge_run(&mut tx, &account, &run.id, charge).await?;
        }
        record_run_end(
            &mut tx,
            &run.id,
            now,
            false,
            charge.map_or(0, |c| c.tokens.prompt),
            charge.map_or(0, |c| c.tokens.completion),
            charge.map_or(0, |c| c.amount),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Locks the row of the account that owns run `id`, before the run's own row: the
/// order every balance-changing transaction takes (account, then run), so ending a run
/// never deadlocks with starting one or with a merge. One statement on PostgreSQL; on
/// SQLite nothing to do, as the write transaction (`BEGIN IMMEDIATE`) already excludes
/// every other writer.
async fn lock_run_account(tx: &mut Tx, backend: Backend, id: &RunId) -> Result<(), StoreError> {
    if backend == Backend::Sqlite {
        return Ok(());
    }
    sqlx::query(
        "UPDATE accounts SET balance = balance \
         WHERE id = (SELECT account_id FROM runs WHERE id = $1) AND status = 'active'",
    )
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A run's end to write ([`Store::finish_run_charged`]).
struct FinishWrite {
    id: RunId,
    owner: String,
    outcome: RunOutcome,
    charge: Option<Charge>,
    backend: Backend,
}

impl Apply for FinishWrite {
    type Output = bool;

    /// Ends the run if it is still active and `owner`'s, appends its text to the
    /// message, counts it in the console's rollup and charges it (its ledger row,
    /// then the balance only if that row was written: a run is charged once); false,
    /// writing nothing, when it was not ours to end. One query on SQLite; on
    /// PostgreSQL the account's lock, then one statement.
    async fn apply(&self, tx: &mut Tx) -> Result<bool, StoreError> {
        let (id, outcome) = (&self.id, &self.outcome);
        lock_run_account(tx, self.backend, id).await?;
        let now = now_ms();
        let sql = match (self.backend, self.charge.is_some()) {
            (Backend::Sqlite, true) => concat!(finish_sqlite_sql!(), "; ", charge_sqlite_sql!()),
            (Backend::Sqlite, false) => finish_sqlite_sql!(),
            (Backend::Postgres, true) => concat!(
                finish_postgres_sql!(),
                ", l AS (INSERT INTO ledger (id, account_id, amount, reason, run_id, model, prompt_tokens, \
                 completion_tokens, cached_prompt_tokens, note, created_at) \
                 SELECT $22, r.account_id, -$23, 'run_usage', $11, $24, $25, $26, $27, NULL, $10 FROM r \
                 ON CONFLICT (run_id) DO NOTHING RETURNING account_id), \
                 a AS (UPDATE accounts SET balance = balance - $23, spent = spent + $23 \
                 FROM l WHERE accounts.id = l.account_id) \
                 SELECT 'ended' AS what FROM r UNION ALL SELECT 'charged' FROM l"
            ),
            (Backend::Postgres, false) => {
                concat!(finish_postgres_sql!(), " SELECT 'ended' AS what FROM r")
            }
        };
        let (minute, hour) = run_end_buckets(now);
        let cost = self.charge.as_ref().map_or(0, |c| c.amount);
        let query = sqlx::query(sql)
            .bind(outcome.status.as_str())
            .bind(&outcome.text)
            .bind(outcome.seq)
            .bind(outcome.finish_reason.as_deref())
            .bind(outcome.error.as_deref())
            .bind(outcome.prompt_tokens)
            .bind(outcome.completion_tokens)
            .bind(outcome.cached_prompt_tokens)
            .bind(outcome.reasoning_tokens)
            .bind(now)
            .bind(id.as_str())
            .bind(&self.owner)
            .bind(MINUTE_MS)
            .bind(minute)
            .bind(HOUR_MS)
            .bind(hour)
            .bind(run_shard(id))
            .bind(i64::from(outcome.status == RunStatus::Failed))
            .bind(outcome.prompt_tokens.unwrap_or(0).max(0))
            .bind(outcome.completion_tokens.unwrap_or(0).max(0))
            .bind(cost);
        let query = match &self.charge {
            Some(charge) => query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(charge.amount)
                .bind(&charge.model)
                .bind(charge.tokens.prompt)
                .bind(charge.tokens.completion)
                .bind(charge.tokens.cached_prompt),
            None => query,
        };
        // Every row of every statement: fetching less could leave statements unrun.
        let rows = query.fetch_all(&mut **tx).await?;
        let mut ended = false;
        let mut charged = false;
        for row in &rows {
            match row.try_get::<String, _>("what")?.as_str() {
                "ended" => ended = true,
                _ => charged = true,
            }
        }
        if ended && self.charge.is_some() && !charged {
            tracing::warn!(run = %id, "run was already charged; not charging it twice");
        }
        Ok(ended)
    }
}
