//! Per-provider health: the outcome and time to first token of recent attempts, kept
//! in memory per instance, for the admin side and for choosing where to send traffic.

use super::ProviderError;
use chorus_model::time::now_ms;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How many recent attempts per provider the figures are computed over.
const WINDOW: usize = 100;

#[derive(Default)]
pub struct HealthBook {
    stats: Mutex<HashMap<String, Stats>>,
}

#[derive(Default)]
struct Stats {
    /// Recent attempts: `Some(first token latency)` for a success, `None` for a failure.
    recent: VecDeque<Option<Option<Duration>>>,
    last_error: Option<(i64, String)>,
}

/// A provider's health as shown to admins.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProviderHealth {
    pub provider: String,
    /// Attempts in the window (at most the last 100).
    pub attempts: usize,
    pub failures: usize,
    pub error_rate: f64,
    /// Median and 95th percentile time to the first token, in milliseconds.
    pub first_token_p50_ms: Option<u64>,
    pub first_token_p95_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Unix ms of the last error.
    pub last_error_at: Option<i64>,
}

impl HealthBook {
    /// An attempt that streamed; `first_token` is None when the reply was empty.
    pub fn record_ok(&self, provider: &str, first_token: Option<Duration>) {
        self.push(provider, Some(first_token), None);
    }

    pub fn record_failure(&self, provider: &str, error: &ProviderError) {
        self.push(provider, None, Some(error.to_string()));
    }

    fn push(&self, provider: &str, outcome: Option<Option<Duration>>, error: Option<String>) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let entry = stats.entry(provider.to_string()).or_default();
        if entry.recent.len() == WINDOW {
            entry.recent.pop_front();
        }
        entry.recent.push_back(outcome);
        if let Some(error) = error {
            entry.last_error = Some((now_ms(), error));
        }
    }

    /// The health of `providers` (those never used show zero attempts).
    pub fn snapshot(&self, providers: &[String]) -> Vec<ProviderHealth> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        providers
            .iter()
            .map(|id| {
                let empty = Stats::default();
                let s = stats.get(id).unwrap_or(&empty);
                let failures = s.recent.iter().filter(|o| o.is_none()).count();
                let mut latencies: Vec<u64> = s
                    .recent
                    .iter()
                    .filter_map(|o| o.flatten())
                    .map(|d| d.as_millis() as u64)
                    .collect();
                latencies.sort_unstable();
                let pick = |p: f64| {
                    (!latencies.is_empty())
                        .then(|| latencies[((latencies.len() - 1) as f64 * p).round() as usize])
                };
                ProviderHealth {
                    provider: id.clone(),
                    attempts: s.recent.len(),
                    failures,
                    error_rate: if s.recent.is_empty() {
                        0.0
                    } else {
                        failures as f64 / s.recent.len() as f64
                    },
                    first_token_p50_ms: pick(0.5),
                    first_token_p95_ms: pick(0.95),
                    last_error: s.last_error.as_ref().map(|(_, e)| e.clone()),
                    last_error_at: s.last_error.as_ref().map(|(t, _)| *t),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProviderErrorKind;

    #[test]
    fn figures_cover_the_recent_window() {
        let book = HealthBook::default();
        for ms in [100, 200, 300] {
            book.record_ok("a", Some(Duration::from_millis(ms)));
        }
        book.record_failure("a", &ProviderError::new(ProviderErrorKind::Server, "boom"));
        let h = &book.snapshot(&["a".into(), "unused".into()]);
        assert_eq!(h[0].attempts, 4);
        assert_eq!(h[0].failures, 1);
        assert_eq!(h[0].error_rate, 0.25);
        assert_eq!(h[0].first_token_p50_ms, Some(200));
        assert!(h[0].last_error.as_deref().unwrap().contains("boom"));
        assert_eq!(h[1].attempts, 0);
        assert_eq!(h[1].first_token_p50_ms, None);

        for _ in 0..WINDOW {
            book.record_ok("a", None);
        }
        let h = &book.snapshot(&["a".into()]);
        assert_eq!(
            (h[0].attempts, h[0].failures),
            (WINDOW, 0),
            "old attempts leave the window"
        );
    }
}
