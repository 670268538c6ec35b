//! The console's figures across instances, read without scanning runs or the ledger:
//! a rollup of the replies that ended per minute and per hour (`run_stats`, written by
//! the transaction that ends each run), and each instance's view of each provider
//! (`provider_stats`, written every few seconds by that instance).

use super::{Store, StoreError};
use crate::Tx;
use chorus_model::ids::RunId;
use serde::Serialize;
use sqlx::Row;

/// A minute, in ms: the rollup's fine bucket.
pub const MINUTE_MS: i64 = 60_000;
/// An hour, in ms: the rollup's coarse bucket (days are summed from hours).
pub const HOUR_MS: i64 = 3_600_000;
/// Rows per bucket that run ends are spread over (by run id).
const SHARDS: u8 = 8;
/// How long minute rows are kept (the console charts the last hour from them).
const KEEP_MINUTES_MS: i64 = 2 * 86_400_000;
/// How long hour rows are kept.
const KEEP_HOURS_MS: i64 = 400 * 86_400_000;
/// Rows of an instance that stopped writing are dropped after this long.
const KEEP_PROVIDER_ROWS_MS: i64 = 86_400_000;

/// What ended in one bucket of time, over every instance.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RunStatBucket {
    /// Start of the bucket, Unix ms.
    pub start: i64,
    pub replies: i64,
    pub failed: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Micro-credits charged.
    pub cost: i64,
}

/// One instance's recent view of one provider.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProviderStat {
    pub instance_id: String,
    pub provider: String,
    pub attempts: i64,
    pub failures: i64,
    pub first_token_p50_ms: Option<i64>,
    pub first_token_p95_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// When the instance last wrote it, Unix ms.
    pub updated_at: i64,
}

/// The shard of the rollup a run's end is counted in (spread by run id).
pub(crate) fn run_shard(run: &RunId) -> i64 {
    i64::from(run.as_str().bytes().last().unwrap_or(0) % SHARDS)
}

/// The start of the minute and of the hour `ended_at` (Unix ms) falls in.
pub(crate) fn run_end_buckets(ended_at: i64) -> (i64, i64) {
    (
        ended_at.div_euclid(MINUTE_MS) * MINUTE_MS,
        ended_at.div_euclid(HOUR_MS) * HOUR_MS,
    )
}

/// Adds a run that just ended to its minute and hour, in the transaction that ends it
/// (its last statement: the bucket row is locked only until the commit that follows).
pub(crate) async fn record_run_end(
    tx: &mut Tx,
    run: &RunId,
    ended_at: i64,
    failed: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost: i64,
) -> Result<(), StoreError> {
    let (minute, hour) = run_end_buckets(ended_at);
    sqlx::query(
        "INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         VALUES ($1, $2, $5, 1, $6, $7, $8, $9), ($3, $4, $5, 1, $6, $7, $8, $9) \
         ON CONFLICT (span, bucket, shard) DO UPDATE SET \
         replies = run_stats.replies + excluded.replies, failed = run_stats.failed + excluded.failed, \
         prompt_tokens = run_stats.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = run_stats.completion_tokens + excluded.completion_tokens, \
         cost = run_stats.cost + excluded.cost",
    )
    .bind(MINUTE_MS)
    .bind(minute)
    .bind(HOUR_MS)
    .bind(hour)
    .bind(run_shard(run))
    .bind(i64::from(failed))
    .bind(prompt_tokens.max(0))
    .bind(completion_tokens.max(0))
    .bind(cost)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Replies that ended since `since` (Unix ms), from the rollup of width `span`
    /// ([`MINUTE_MS`] or [`HOUR_MS`]), summed into buckets of `group_ms` (a multiple of
    /// `span`), oldest first; empty buckets are left out. Reads at most
    /// (buckets × 8) rows of the primary key's range.
    pub async fn run_stats(
        &self,
        span: i64,
        since: i64,
        group_ms: i64,
    ) -> Result<Vec<RunStatBucket>, StoreError> {
        let group = group_ms.max(1);
        // `group` is an integer of ours, never input: written into the statement so
        // the grouping expression is one both databases match with the select list.
        let sql = format!(
            "SELECT (bucket / {group}) * {group} AS b, \
             CAST(SUM(replies) AS BIGINT) AS replies, CAST(SUM(failed) AS BIGINT) AS failed, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS p, CAST(SUM(completion_tokens) AS BIGINT) AS c, \
             CAST(SUM(cost) AS BIGINT) AS cost \
             FROM run_stats WHERE span = $1 AND bucket >= $2 \
             GROUP BY (bucket / {group}) * {group} ORDER BY 1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(span)
            .bind(since)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RunStatBucket {
                    start: r.try_get("b")?,
                    replies: r.try_get("replies")?,
                    failed: r.try_get("failed")?,
                    prompt_tokens: r.try_get("p")?,
                    completion_tokens: r.try_get("c")?,
                    cost: r.try_get("cost")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Replaces this instance's rows of provider figures (one per provider).
    pub async fn write_provider_stats(&self, rows: &[ProviderStat]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for p in rows {
            sqlx::query(
                "INSERT INTO provider_stats (instance_id, provider, attempts, failures, first_token_p50_ms, \
                 first_token_p95_ms, last_error, last_error_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (instance_id, provider) DO UPDATE SET attempts = excluded.attempts, \
                 failures = excluded.failures, first_token_p50_ms = excluded.first_token_p50_ms, \
                 first_token_p95_ms = excluded.first_token_p95_ms, last_error = excluded.last_error, \
                 last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
            )
            .bind(&p.instance_id)
            .bind(&p.provider)
            .bind(p.attempts)
            .bind(p.failures)
            .bind(p.first_token_p50_ms)
            .bind(p.first_token_p95_ms)
            .bind(p.last_error.as_deref())
            .bind(p.last_error_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every instance's provider figures written since `since` (Unix ms), by provider
    /// then instance.
    pub async fn provider_stats(&self, since: i64) -> Result<Vec<ProviderStat>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, provider, attempts, failures, first_token_p50_ms, first_token_p95_ms, \
             last_error, last_error_at, updated_at FROM provider_stats WHERE updated_at >= $1 \
             ORDER BY provider, instance_id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderStat {
                    instance_id: r.try_get("instance_id")?,
                    provider: r.try_get("provider")?,
                    attempts: r.try_get("attempts")?,
                    failures: r.try_get("failures")?,
                    first_token_p50_ms: r.try_get("first_token_p50_ms")?,
                    first_token_p95_ms: r.try_get("first_token_p95_ms")?,
                    last_error: r.try_get("last_error")?,
                    last_error_at: r.try_get("last_error_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Drops rollup rows past their keeping time and provider rows of instances that
    /// stopped writing a day ago.
    pub async fn prune_stats(&self, now: i64) -> Result<(), StoreError> {
        for (sql, before) in [
            (
                "DELETE FROM run_stats WHERE span = 60000 AND bucket < $1",
                now - KEEP_MINUTES_MS,
            ),
            (
                "DELETE FROM run_stats WHERE span = 3600000 AND bucket < $1",
                now - KEEP_HOURS_MS,
            ),
            (
                "DELETE FROM provider_stats WHERE updated_at < $1",
                now - KEEP_PROVIDER_ROWS_MS,
            ),
        ] {
            sqlx::query(sql).bind(before).execute(self.pool()).await?;
        }
        Ok(())
    }
}
