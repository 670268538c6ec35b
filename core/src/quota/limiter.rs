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

use chorus_model::time::now_ms;
use redis::aio::MultiplexedConnection;
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
    Memory(Mutex<HashMap<String, (i64, u64)>>),
    Redis {
        conn: MultiplexedConnection,
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

/// Entries the in-process limiter keeps before it forgets past windows.
const MEMORY_PRUNE_AT: usize = 10_000;

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(Mutex::new(HashMap::new()))
    }

    /// Counters in the Redis at `url`, under `{prefix}limit:`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Limiter::Redis {
            conn,
            prefix: format!("{prefix}limit:"),
        })
    }

    /// The index of the current window of `window`.
    fn window_index(window: Duration) -> i64 {
        now_ms() / (window.as_millis().max(1) as i64)
    }

    /// How many events `key` has in the current window.
    pub async fn count(&self, key: &str, window: Duration) -> Result<u64, LimiterError> {
        let index = Self::window_index(window);
        match self {
            Limiter::Memory(map) => Ok(map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .filter(|(i, _)| *i == index)
                .map_or(0, |(_, n)| *n)),
            Limiter::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let n: Option<i64> = redis::cmd("GET")
                    .arg(format!("{prefix}{key}:{index}"))
                    .query_async(&mut conn)
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
            Limiter::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = map.get_mut(&taken.key)
                    && entry.0 == taken.index
                {
                    entry.1 = entry.1.saturating_sub(1);
                }
                Ok(())
            }
            Limiter::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let redis_key = format!("{prefix}{}:{}", taken.key, taken.index);
                // The expiry again, in case the key lapsed in between (DECR would
                // otherwise leave a -1 behind for ever).
                let (_, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("DECR")
                    .arg(&redis_key)
                    .cmd("PEXPIRE")
                    .arg(&redis_key)
                    .arg(taken.window.as_millis() as u64 + 1000)
                    .query_async(&mut conn)
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
            Limiter::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= MEMORY_PRUNE_AT {
                    map.retain(|_, (i, _)| *i == index);
                }
                let entry = map.entry(key.to_string()).or_insert((index, 0));
                if entry.0 != index {
                    *entry = (index, 0);
                }
                entry.1 += 1;
                Ok(entry.1)
            }
            Limiter::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let redis_key = format!("{prefix}{key}:{index}");
                let (n, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(&redis_key)
                    .cmd("PEXPIRE")
                    .arg(&redis_key)
                    .arg(window.as_millis() as u64 + 1000)
                    .query_async(&mut conn)
                    .await?;
                Ok(n.max(0) as u64)
            }
        }
    }
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
