//! Fixed-window counters for rate limits and guessing limits: in Redis when the
//! deployment has one (every instance counts against the same window), in process
//! otherwise.
//!
//! Fixed windows rather than a GCRA crate such as `governor`: the guessing limits
//! count only failures, and a window is exactly what Redis gives atomically with
//! `INCR` + `PEXPIRE`.
//!
//! A guessing limit is checked and recorded in one step ([`Limiter::take`]): the
//! attempt is counted *before* it is tried, atomically, and a success gives its slot
//! back ([`Limiter::release`]). Checking first and recording after the outcome would
//! let a parallel burst pass the check all at once, each request seeing the count
//! from before any of them failed.

use crate::redis_conn::Conn;
use chorus_model::time::now_ms;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate-limit store (Redis): {0}")]
    Redis(#[from] redis::RedisError),
}

/// Counts events per key and window.
pub enum Limiter {
    Memory(Mutex<MemoryCounters>),
    Redis {
        /// Made again after Redis dropped it (a restart).
        conn: Conn,
        prefix: String,
    },
}

/// An attempt counted by [`Limiter::take`], to give back with [`Limiter::release`]
/// when it turns out not to count (a successful login, a code that worked).
#[derive(Debug)]
#[must_use = "a taken slot counts as a failure unless it is released"]
pub struct Taken {
    key: String,
    window: Duration,
    index: i64,
}

/// How often the in-process limiter forgets counters whose window has passed.
const MEMORY_PRUNE_EVERY_MS: i64 = 10_000;

/// The in-process counters: one per key, for its current window, forgotten once the
/// window has passed (checked at most every [`MEMORY_PRUNE_EVERY_MS`]), so memory
/// follows the keys of the current windows, not every key ever seen.
#[derive(Default)]
pub struct MemoryCounters {
    counters: HashMap<String, Counter>,
    last_prune_ms: i64,
}

struct Counter {
    index: i64,
    count: u64,
    /// The end of the counter's window, in Unix ms: after it, the counter is dead.
    expires_at: i64,
}

impl MemoryCounters {
    /// Adds one to `key`'s counter of window `index` (of `window_ms`), at `now`.
    fn incr(&mut self, key: &str, window_ms: i64, index: i64, now: i64) -> u64 {
        if now - self.last_prune_ms >= MEMORY_PRUNE_EVERY_MS {
            self.counters.retain(|_, c| c.expires_at > now);
            self.last_prune_ms = now;
        }
        let counter = self.counters.entry(key.to_string()).or_insert(Counter {
            index,
            count: 0,
            expires_at: 0,
        });
        if counter.index != index {
            counter.index = index;
            counter.count = 0;
        }
        counter.expires_at = (index + 1) * window_ms;
        counter.count += 1;
        counter.count
    }

    fn count(&self, key: &str, index: i64) -> u64 {
        self.counters
            .get(key)
            .filter(|c| c.index == index)
            .map_or(0, |c| c.count)
    }

    fn decr(&mut self, key: &str, index: i64) {
        if let Some(c) = self.counters.get_mut(key)
            && c.index == index
        {
            c.count = c.count.saturating_sub(1);
        }
    }

    /// How many counters are kept.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(Mutex::new(MemoryCounters::default()))
    }

    /// Counters in the Redis at `url`, under `{prefix}limit:`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let conn = Conn::connect(&client, config).await?;
        Ok(Limiter::Redis {
            conn,
            prefix: format!("{prefix}limit:"),
        })
    }

    /// The index of the current window of `window`.
    fn window_index(window: Duration) -> i64 {
        now_ms() / window_ms(window)
    }

    /// How many events `key` has in the current window.
    pub async fn count(&self, key: &str, window: Duration) -> Result<u64, LimiterError> {
        let index = Self::window_index(window);
        match self {
            Limiter::Memory(counters) => Ok(counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .count(key, index)),
            Limiter::Redis { conn, prefix } => {
                let n: Option<i64> = conn
                    .query(redis::cmd("GET").arg(format!("{prefix}{key}:{index}")))
                    .await?;
                Ok(n.unwrap_or(0).max(0) as u64)
            }
        }
    }

    /// Counts one attempt of `key` in the current window and admits it when fewer than
    /// `limit` attempts were counted before it (atomically: of any number of parallel
    /// callers, at most `limit` are admitted per window). A refused attempt stays
    /// counted; an admitted one stays counted unless [`Limiter::release`]d.
    pub async fn take(
        &self,
        key: &str,
        window: Duration,
        limit: u64,
    ) -> Result<Option<Taken>, LimiterError> {
        let index = Self::window_index(window);
        let n = self.incr(key, window, index).await?;
        Ok((n <= limit).then(|| Taken {
            key: key.to_string(),
            window,
            index,
        }))
    }

    /// Gives back an attempt [`Limiter::take`] counted: it no longer counts against
    /// its window (a no-op once that window has passed).
    pub async fn release(&self, taken: Taken) -> Result<(), LimiterError> {
        match self {
            Limiter::Memory(counters) => {
                counters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .decr(&taken.key, taken.index);
                Ok(())
            }
            Limiter::Redis { conn, prefix } => {
                let redis_key = format!("{prefix}{}:{}", taken.key, taken.index);
                // The expiry again, in case the key lapsed in between (DECR would
                // otherwise leave a -1 behind for ever).
                let (_, _): (i64, i64) = conn
                    .query_pipe(
                        redis::pipe()
                            .atomic()
                            .cmd("DECR")
                            .arg(&redis_key)
                            .cmd("PEXPIRE")
                            .arg(&redis_key)
                            .arg(taken.window.as_millis() as u64 + 1000),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Records one event of `key`; returns the count in the current window with it.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<u64, LimiterError> {
        self.incr(key, window, Self::window_index(window)).await
    }

    /// Adds one to `key`'s counter of window `index`, atomically; returns the new count.
    async fn incr(&self, key: &str, window: Duration, index: i64) -> Result<u64, LimiterError> {
        match self {
            Limiter::Memory(counters) => Ok(counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .incr(key, window_ms(window), index, now_ms())),
            Limiter::Redis { conn, prefix } => {
                let redis_key = format!("{prefix}{key}:{index}");
                let (n, _): (i64, i64) = conn
                    .query_pipe(
                        redis::pipe()
                            .atomic()
                            .cmd("INCR")
                            .arg(&redis_key)
                            .cmd("PEXPIRE")
                            .arg(&redis_key)
                            .arg(window.as_millis() as u64 + 1000),
                    )
                    .await?;
                Ok(n.max(0) as u64)
            }
        }
    }
}

fn window_ms(window: Duration) -> i64 {
    window.as_millis().clamp(1, i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_counts_per_key_and_window() {
        let l = Limiter::memory();
        let w = Duration::from_secs(3600);
        assert_eq!(l.count("a", w).await.unwrap(), 0);
        assert_eq!(l.hit("a", w).await.unwrap(), 1);
        assert_eq!(l.hit("a", w).await.unwrap(), 2);
        assert_eq!(l.hit("b", w).await.unwrap(), 1);
        assert_eq!(l.count("a", w).await.unwrap(), 2);
    }

    #[test]
    fn memory_forgets_windows_that_have_passed_whatever_their_length() {
        let mut counters = MemoryCounters::default();
        let (minute, hour) = (60_000, 3_600_000);
        let t0 = 1_000 * hour;
        for i in 0..1000 {
            counters.incr(&format!("login:{i}"), minute, t0 / minute, t0);
        }
        counters.incr("guess", hour, t0 / hour, t0);
        assert_eq!(counters.len(), 1001);
        // Within the prune interval nothing is scanned.
        counters.incr("other", minute, t0 / minute, t0 + 1);
        assert_eq!(counters.len(), 1002);
        // Two minutes on: the minute counters are gone, the hour's is kept and counts on.
        let t1 = t0 + 2 * minute;
        counters.incr("new", minute, t1 / minute, t1);
        assert_eq!(counters.len(), 2, "only `guess` and `new` are left");
        assert_eq!(counters.incr("guess", hour, t1 / hour, t1), 2);
    }

    #[tokio::test]
    async fn take_admits_up_to_the_limit_and_release_gives_back() {
        let l = Limiter::memory();
        let w = Duration::from_secs(3600);
        let first = l.take("k", w, 2).await.unwrap().expect("first admitted");
        let _second = l.take("k", w, 2).await.unwrap().expect("second admitted");
        assert!(l.take("k", w, 2).await.unwrap().is_none(), "third refused");
        assert_eq!(l.count("k", w).await.unwrap(), 3);
        l.release(first).await.unwrap();
        assert_eq!(l.count("k", w).await.unwrap(), 2);
    }
}
