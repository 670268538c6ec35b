//! A Redis connection that is made again once Redis dropped it (a restart, a cut
//! network). redis-rs's multiplexed connection never reconnects by itself: the
//! journal and the limits holding one failed every command after a Redis restart
//! until their instance restarted too (appends lost, readers cut off, logins and
//! messages refused, `/readyz` failing).
//!
//! A command that finds the connection dropped connects again and is sent once more
//! (a Redis that is still down fails it, and the caller's retry decides what to do).
//! A response timeout is not a dropped connection: the answer of a command that
//! landed late must not cost the connection.

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
};
use std::sync::{Arc, RwLock};
use tokio::sync::Mutex;

/// A shared, self-replacing multiplexed connection. Clones share it.
#[derive(Clone)]
pub struct Conn {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    config: AsyncConnectionConfig,
    /// The connection every command clones: a short read lock, never held across an
    /// await, so commands do not queue behind one another.
    current: RwLock<Current>,
    /// Held only while connecting again, so that one command reconnects and the
    /// others wait for its connection instead of each making their own.
    reconnect: Mutex<()>,
}

struct Current {
    /// Bumped at each new connection, so that only the first command to find a
    /// connection dropped replaces it (not one that failed on an older one).
    generation: u64,
    /// `None` once dropped, until the next command connects.
    conn: Option<MultiplexedConnection>,
}

impl Conn {
    /// Connects now: an unreachable Redis at start is an error of the caller.
    pub(crate) async fn connect(
        client: &Client,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self {
            shared: Arc::new(Shared {
                client: client.clone(),
                config,
                current: RwLock::new(Current {
                    generation: 0,
                    conn: Some(conn),
                }),
                reconnect: Mutex::new(()),
            }),
        })
    }

    /// The current connection, if there is one: a clone under a read lock.
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        current.conn.clone().map(|conn| (current.generation, conn))
    }

    /// The current connection (connecting when the last one was dropped).
    async fn get(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _connecting = self.shared.reconnect.lock().await;
        // Another command may have connected while this one waited.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let conn = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&self.shared.config)
            .await?;
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        current.generation += 1;
        current.conn = Some(conn.clone());
        tracing::info!("connected to Redis again");
        Ok((current.generation, conn))
    }

    /// Runs `cmd`. A connection found dropped is replaced and `cmd` sent once more on
    /// the new one: every command sent through a `Conn` may be repeated (reads, pings,
    /// script loads, appends at a fixed seq that compare what a seq holds, counters).
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let (generation, mut conn) = self.get().await?;
        match cmd.query_async(&mut conn).await {
            Err(e) if dropped(&e) => {
                self.replace(generation, &e);
                let (generation, mut conn) = self.get().await?;
                let again = cmd.query_async(&mut conn).await;
                self.check(generation, again)
            }
            other => other,
        }
    }

    /// [`Conn::query`] for a pipeline.
    pub(crate) async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        let (generation, mut conn) = self.get().await?;
        match pipe.query_async(&mut conn).await {
            Err(e) if dropped(&e) => {
                self.replace(generation, &e);
                let (generation, mut conn) = self.get().await?;
                let again = pipe.query_async(&mut conn).await;
                self.check(generation, again)
            }
            other => other,
        }
    }

    /// Marks the connection of `generation` for replacement when `result` says it
    /// was dropped.
    fn check<T>(&self, generation: u64, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result
            && dropped(e)
        {
            self.replace(generation, e);
        }
        result
    }

    /// Forgets the connection of `generation` (not a newer one another command made).
    fn replace(&self, generation: u64, error: &RedisError) {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if current.generation == generation && current.conn.is_some() {
            tracing::warn!(%error, "the Redis connection was dropped; reconnecting");
            current.conn = None;
        }
    }
}

/// Whether `e` means the connection is gone (rather than a command refused, or an
/// answer late).
fn dropped(e: &RedisError) -> bool {
    e.is_connection_dropped() || (e.is_unrecoverable_error() && !e.is_timeout())
}
