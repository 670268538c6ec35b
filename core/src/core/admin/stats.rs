//! The deployment's activity and provider health across instances, as the Overview
//! and Providers pages show them: replies, tokens, errors and spend per minute, hour
//! and day from the store's rollup, and each provider's figures as every instance
//! last published them (this instance publishes its own every few seconds, and
//! freshly whenever an admin reads them).

use super::Admin;
use crate::config::ProviderKind;
use crate::core::{Core, CoreError};
use chorus_model::time::now_ms;
use chorus_providers::ProviderRegistry;
use chorus_store::{HOUR_MS, MINUTE_MS, ProviderStat, RunStatBucket, Store};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;
/// How often an instance publishes its providers' figures (and prunes the rollup).
const PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// An instance whose figures are older than this is taken as gone and left out.
const STALE_MS: i64 = 5 * 60_000;
/// Minutes the "per minute" rates average over.
const RATE_MINUTES: i64 = 5;

/// Replies over the last hour (per minute), day (per hour) and 30 days (per day).
#[derive(Clone, Debug, Serialize)]
pub struct Activity {
    /// Replies ended per minute, averaged over the last 5 minutes.
    pub replies_per_minute: f64,
    /// Prompt and completion tokens per minute, averaged over the last 5 minutes.
    pub tokens_per_minute: f64,
    /// Failed replies out of all replies that ended in the last hour (0 to 1).
    pub error_rate_hour: f64,
    /// 60 buckets of a minute, oldest first (empty ones included).
    pub last_hour: Vec<RunStatBucket>,
    /// 24 buckets of an hour.
    pub last_day: Vec<RunStatBucket>,
    /// 30 buckets of a UTC day.
    pub last_30_days: Vec<RunStatBucket>,
}

/// One provider's health over every instance that published it recently.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderSummary {
    pub id: String,
    pub kind: ProviderKind,
    /// Recent attempts (each instance's last 100), summed.
    pub attempts: i64,
    pub failures: i64,
    pub error_rate: f64,
    /// Time to first token: the instances' medians weighted by their attempts.
    pub first_token_p50_ms: Option<i64>,
    /// The highest of the instances' 95th percentiles.
    pub first_token_p95_ms: Option<i64>,
    /// The newest error on any instance.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Each instance's own figures.
    pub instances: Vec<ProviderStat>,
}

/// A model as the Providers page lists it: its price and, for an alias, its chain.
#[derive(Clone, Debug, Serialize)]
pub struct ModelPrice {
    pub id: String,
    /// Credits per million tokens.
    pub prompt_price: f64,
    pub completion_price: f64,
    pub cached_prompt_price: f64,
    /// For an alias: the `provider/model`s it tries, in order.
    pub fallbacks: Vec<String>,
}

/// The Providers and models page.
#[derive(Clone, Debug, Serialize)]
pub struct ProvidersPage {
    pub providers: Vec<ProviderSummary>,
    pub models: Vec<ModelPrice>,
    pub default_model: String,
}

impl Core {
    /// Replies, tokens, errors and spend over the last hour, day and 30 days, on
    /// every instance, from the rollup (at most a few thousand index rows).
    pub async fn activity(&self, _: &Admin) -> Result<Activity, CoreError> {
        let now = now_ms();
        let minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
        let hour = now.div_euclid(HOUR_MS) * HOUR_MS;
        let day = now.div_euclid(DAY_MS) * DAY_MS;
        let hour_start = minute - 59 * MINUTE_MS;
        let last_hour = filled(
            self.store
                .run_stats(MINUTE_MS, hour_start, MINUTE_MS)
                .await?,
            hour_start,
            MINUTE_MS,
            60,
        );
        let day_start = hour - 23 * HOUR_MS;
        let last_day = filled(
            self.store.run_stats(HOUR_MS, day_start, HOUR_MS).await?,
            day_start,
            HOUR_MS,
            24,
        );
        let month_start = day - 29 * DAY_MS;
        let last_30_days = filled(
            self.store.run_stats(HOUR_MS, month_start, DAY_MS).await?,
            month_start,
            DAY_MS,
            30,
        );
        let recent = &last_hour[last_hour.len() - RATE_MINUTES as usize..];
        let replies: i64 = recent.iter().map(|b| b.replies).sum();
        let tokens: i64 = recent
            .iter()
            .map(|b| b.prompt_tokens + b.completion_tokens)
            .sum();
        let (ended, failed) = last_hour
            .iter()
            .fold((0, 0), |(e, f), b| (e + b.replies, f + b.failed));
        Ok(Activity {
            replies_per_minute: replies as f64 / RATE_MINUTES as f64,
            tokens_per_minute: tokens as f64 / RATE_MINUTES as f64,
            error_rate_hour: if ended == 0 {
                0.0
            } else {
                failed as f64 / ended as f64
            },
            last_hour,
            last_day,
            last_30_days,
        })
    }

    /// Each configured provider's health over every instance that published it in the
    /// last 5 minutes (this one's figures are published first, so they are fresh).
    pub async fn providers_across_instances(
        &self,
        _: &Admin,
    ) -> Result<Vec<ProviderSummary>, CoreError> {
        publish(&self.store, &self.providers, &self.config.instance_id()).await?;
        let stats = self.store.provider_stats(now_ms() - STALE_MS).await?;
        Ok(self
            .providers
            .providers()
            .into_iter()
            .map(|(id, kind)| {
                let instances: Vec<ProviderStat> =
                    stats.iter().filter(|s| s.provider == id).cloned().collect();
                summarize(id, kind, instances)
            })
            .collect())
    }

    /// Providers across instances, every model's price and every alias's chain.
    pub async fn providers_page(&self, admin: &Admin) -> Result<ProvidersPage, CoreError> {
        let providers = self.providers_across_instances(admin).await?;
        let models = self
            .providers
            .models()
            .iter()
            .map(|m| {
                let price = self.prices.price(&m.id);
                ModelPrice {
                    id: m.id.clone(),
                    prompt_price: price.prompt,
                    completion_price: price.completion,
                    cached_prompt_price: price.cached_prompt,
                    fallbacks: m.fallbacks.clone(),
                }
            })
            .collect();
        Ok(ProvidersPage {
            providers,
            models,
            default_model: self.providers.default_model().to_string(),
        })
    }
}

/// `buckets` (oldest first, empty ones missing) as `count` buckets of `step` from
/// `start`, the missing ones empty.
fn filled(buckets: Vec<RunStatBucket>, start: i64, step: i64, count: i64) -> Vec<RunStatBucket> {
    let mut out: Vec<RunStatBucket> = (0..count)
        .map(|i| RunStatBucket {
            start: start + i * step,
            ..RunStatBucket::default()
        })
        .collect();
    for b in buckets {
        let i = (b.start - start).div_euclid(step);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            let at = slot.start;
            *slot = RunStatBucket { start: at, ..b };
        }
    }
    out
}

/// One provider's figures over its instances.
fn summarize(id: String, kind: ProviderKind, instances: Vec<ProviderStat>) -> ProviderSummary {
    let attempts: i64 = instances.iter().map(|s| s.attempts).sum();
    let failures: i64 = instances.iter().map(|s| s.failures).sum();
    let timed: Vec<(i64, i64)> = instances
        .iter()
        .filter_map(|s| Some((s.first_token_p50_ms?, (s.attempts - s.failures).max(1))))
        .collect();
    let weight: i64 = timed.iter().map(|(_, w)| w).sum();
    let newest_error = instances
        .iter()
        .filter(|s| s.last_error.is_some())
        .max_by_key(|s| s.last_error_at.unwrap_or(0));
    ProviderSummary {
        id,
        kind,
        attempts,
        failures,
        error_rate: if attempts == 0 {
            0.0
        } else {
            failures as f64 / attempts as f64
        },
        first_token_p50_ms: (weight > 0)
            .then(|| timed.iter().map(|(ms, w)| ms * w).sum::<i64>() / weight),
        first_token_p95_ms: instances.iter().filter_map(|s| s.first_token_p95_ms).max(),
        last_error: newest_error.and_then(|s| s.last_error.clone()),
        last_error_at: newest_error.and_then(|s| s.last_error_at),
        instances,
    }
}

/// Writes this instance's figures of every configured provider.
async fn publish(
    store: &Store,
    providers: &ProviderRegistry,
    instance: &str,
) -> Result<(), CoreError> {
    let ids: Vec<String> = providers
        .providers()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let now = now_ms();
    let rows: Vec<ProviderStat> = providers
        .health()
        .snapshot(&ids)
        .into_iter()
        .map(|h| ProviderStat {
            instance_id: instance.to_string(),
            provider: h.provider,
            attempts: h.attempts as i64,
            failures: h.failures as i64,
            first_token_p50_ms: h.first_token_p50_ms.map(|v| v as i64),
            first_token_p95_ms: h.first_token_p95_ms.map(|v| v as i64),
            last_error: h.last_error,
            last_error_at: h.last_error_at,
            updated_at: now,
        })
        .collect();
    store.write_provider_stats(&rows).await?;
    Ok(())
}

/// Publishes this instance's provider figures and prunes the rollup every
/// [`PUBLISH_EVERY`], until `stop`.
pub(in crate::core) async fn publish_forever(
    store: Store,
    providers: Arc<ProviderRegistry>,
    instance: String,
    stop: CancellationToken,
) {
    loop {
        if let Err(e) = publish(&store, &providers, &instance).await {
            tracing::warn!(error = %e, "cannot publish provider figures");
        }
        if let Err(e) = store.prune_stats(now_ms()).await {
            tracing::warn!(error = %e, "cannot prune the console's rollup");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PUBLISH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(instance: &str, attempts: i64, failures: i64, p50: Option<i64>) -> ProviderStat {
        ProviderStat {
            instance_id: instance.into(),
            provider: "p".into(),
            attempts,
            failures,
            first_token_p50_ms: p50,
            first_token_p95_ms: p50.map(|v| v * 2),
            last_error: (failures > 0).then(|| format!("error on {instance}")),
            last_error_at: (failures > 0).then_some(attempts),
            updated_at: 0,
        }
    }

    #[test]
    fn instances_are_summed_and_weighted() {
        let s = summarize(
            "p".into(),
            ProviderKind::Scripted,
            vec![stat("a", 10, 0, Some(100)), stat("b", 30, 10, Some(400))],
        );
        assert_eq!((s.attempts, s.failures), (40, 10));
        assert!((s.error_rate - 0.25).abs() < 1e-9);
        // 10 successes at 100 ms, 20 at 400 ms.
        assert_eq!(s.first_token_p50_ms, Some(300));
        assert_eq!(s.first_token_p95_ms, Some(800));
        assert_eq!(s.last_error.as_deref(), Some("error on b"));
        let none = summarize("p".into(), ProviderKind::Scripted, Vec::new());
        assert_eq!((none.attempts, none.first_token_p50_ms), (0, None));
    }

    #[test]
    fn missing_buckets_are_empty() {
        let got = filled(
            vec![RunStatBucket {
                start: 120,
                replies: 3,
                ..RunStatBucket::default()
            }],
            0,
            60,
            4,
        );
        let replies: Vec<i64> = got.iter().map(|b| b.replies).collect();
        let starts: Vec<i64> = got.iter().map(|b| b.start).collect();
        assert_eq!(replies, [0, 0, 3, 0]);
        assert_eq!(starts, [0, 60, 120, 180]);
    }
}
