//! Checkpoints: a streaming run's text saved and its lease renewed, many runs a
//! statement.

use crate::Tx;
use crate::{Store, StoreError};
use chorus_model::ids::RunId;
use chorus_model::time::now_ms;
use sqlx::Row;

impl Store {
    /// Saves the text so far and renews the lease in one write. Returns whether a stop
    /// was requested, or `NotFound` when this instance no longer holds the lease.
    pub async fn checkpoint(
        &self,
        id: &RunId,
        owner: &str,
        text: &str,
        seq: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().acquire().await?;
        checkpoint_on(&mut conn, id, owner, text, seq, lease_until)
            .await?
            .ok_or(StoreError::NotFound("leased run"))
    }

    /// Checkpoints many runs in few transactions (the hot path of a busy instance),
    /// up to [`CHECKPOINT_BATCH`] runs per statement; a lease is moved to
    /// `lease_until` only once a sixth of it has passed. For each run:
    /// `Some(stop_requested)`, or `None` when its lease is lost.
    pub async fn checkpoint_many(
        &self,
        owner: &str,
        runs: &[(RunId, Checkpoint)],
        lease_until: i64,
    ) -> Result<Vec<Option<bool>>, StoreError> {
        let mut results = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(256) {
            let mut tx = self.begin_checkpoint().await?;
            let mut rest = chunk;
            while !rest.is_empty() {
                // Statements of a few sizes only (powers of two), each prepared once
                // per connection: 45 runs are written as 32 + 8 + 4 + 1.
                let n = CHECKPOINT_BATCH.min(1 << rest.len().ilog2());
                let (batch, tail) = rest.split_at(n);
                results.extend(checkpoint_batch(&mut tx, owner, batch, lease_until).await?);
                rest = tail;
            }
            tx.commit().await?;
        }
        Ok(results)
    }
}

/// A run's text to save: everything up to journal seq `seq`.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub text: String,
    pub seq: i64,
}

/// One checkpoint write: marks the run streaming, saves its text, renews its lease,
/// and reads back whether a stop was requested; `None` when `owner` lost the lease.
async fn checkpoint_on(
    conn: &mut sqlx::AnyConnection,
    id: &RunId,
    owner: &str,
    text: &str,
    seq: i64,
    lease_until: i64,
) -> Result<Option<bool>, StoreError> {
    let row = sqlx::query(
        "UPDATE runs SET status = 'streaming', text = $1, checkpoint_seq = $2, lease_expires_at = $3, updated_at = $4 \
         WHERE id = $5 AND lease_owner = $6 AND status IN ('queued', 'streaming') RETURNING stop_requested",
    )
    .bind(text)
    .bind(seq)
    .bind(lease_until)
    .bind(now_ms())
    .bind(id.as_str())
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<i64, _>("stop_requested")? != 0),
        None => None,
    })
}

/// The most runs one checkpoint statement saves (a power of two: see
/// [`Store::checkpoint_many`]).
pub(crate) const CHECKPOINT_BATCH: usize = 64;

/// The time a run's lease must run out before for a batched checkpoint to renew it:
/// a lease is renewed once a sixth of its length has passed, not at every
/// checkpoint. The other checkpoints then change no indexed column of the run
/// (`lease_expires_at` is in `runs_active`), so PostgreSQL can write them as
/// heap-only updates instead of a new entry in each of the table's indexes, twice a
/// second for every streaming run.
fn renew_below(lease_until: i64, now: i64) -> i64 {
    lease_until - (lease_until - now).max(0) / 6
}

/// Checkpoints `runs` (at most [`CHECKPOINT_BATCH`]) in one statement, as
/// [`checkpoint_on`] does each but renewing a lease only when it is due
/// ([`renew_below`]): a run's row is written only if `owner` still holds
/// its lease, and the statement returns the rows it wrote. The results are in the
/// order of `runs`.
async fn checkpoint_batch(
    tx: &mut Tx,
    owner: &str,
    runs: &[(RunId, Checkpoint)],
    lease_until: i64,
) -> Result<Vec<Option<bool>>, StoreError> {
    use std::fmt::Write as _;
    // `column1`.. are the names both SQLite and PostgreSQL give a VALUES list's columns.
    let mut sql = String::from(
        "UPDATE runs SET status = 'streaming', text = v.column2, checkpoint_seq = v.column3, \
         lease_expires_at = CASE WHEN runs.lease_expires_at IS NULL \
         OR runs.lease_expires_at < $4 THEN $1 ELSE runs.lease_expires_at END, \
         updated_at = $2 FROM (VALUES ",
    );
    for i in 0..runs.len() {
        let p = 5 + 3 * i;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{sep}(${p}, ${}, ${})", p + 1, p + 2);
    }
    sql.push_str(
        ") AS v WHERE runs.id = v.column1 AND runs.lease_owner = $3 \
         AND runs.status IN ('queued', 'streaming') RETURNING runs.id, runs.stop_requested",
    );
    let now = now_ms();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(now)
        .bind(owner)
        .bind(renew_below(lease_until, now));
    for (id, cp) in runs {
        query = query.bind(id.as_str()).bind(cp.text.as_str()).bind(cp.seq);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut stops = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        stops.insert(id, row.try_get::<i64, _>("stop_requested")? != 0);
    }
    Ok(runs
        .iter()
        .map(|(id, _)| stops.get(id.as_str()).copied())
        .collect())
}
