//! Fixed-window counters for rate limits and guessing limits: in Redis when the
//! deployment has one (every instance counts against the same window), in process
//! otherwise.
//!
//! Fixed windows rather than a GCRA crate such as `governor`: the guessing limits
//! count only failures and must be read without being consumed, and a window is
//! exactly what Redis gives atomically with `INCR` + `PEXPIRE`.

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
                let n: Option<u64> = redis::cmd("GET")
                    .arg(format!("{prefix}{key}:{index}"))
                    .query_async(&mut conn)
                    .await?;
                Ok(n.unwrap_or(0))
            }
        }
    }

    /// Records one event of `key`; returns the count in the current window with it.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<u64, LimiterError> {
        let index = Self::window_index(window);
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
                let (n, _): (u64, i64) = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(&redis_key)
                    .cmd("PEXPIRE")
                    .arg(&redis_key)
                    .arg(window.as_millis() as u64 + 1000)
                    .query_async(&mut conn)
                    .await?;
                Ok(n)
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
}
