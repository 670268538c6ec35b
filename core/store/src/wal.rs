//! WAL checkpoints of a SQLite file, off the writer.
//!
//! By default SQLite checkpoints inside the commit that takes the write-ahead log past
//! 1,000 pages: that commit copies the pages back into the database file and syncs
//! both files before it returns, so every few hundred runs one admission or end paid a
//! checkpoint's fsyncs while every write queued behind it waited (the writes' p99).
//! Here no connection checkpoints on commit (`wal_autocheckpoint = 0`, set on each
//! connection); one task checkpoints every [`EVERY`] on a connection of the read pool,
//! in `PASSIVE` mode, which never waits for the writer or a reader, so the writer only
//! ever appends to the log. The log restarts from its beginning once a checkpoint has
//! copied all of it, and is cut back to [`SIZE_LIMIT`] when it does, so it stays
//! bounded as long as checkpoints keep up (a reader that holds an old snapshot for a
//! long time holds the log, as it would with automatic checkpoints).
//!
//! Durability is unchanged: a commit is in the log, which recovery replays.

use sqlx::AnyPool;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often the log is checkpointed.
pub(crate) const EVERY: Duration = Duration::from_millis(250);

/// Bytes the log keeps on disk after it restarts (`journal_size_limit`).
pub(crate) const SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The pragmas of every connection to a WAL file: no checkpoint on commit, and the
/// log cut back to [`SIZE_LIMIT`] when it restarts.
pub(crate) fn connection_pragmas() -> String {
    format!("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {SIZE_LIMIT}")
}

/// Keeps the checkpoint task of one store going: the task ends when the store's last
/// handle drops this (or when the pool is closed), so it never keeps a pool open.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

/// Starts checkpointing the log of `pool`'s file every [`EVERY`].
pub(crate) fn start(pool: AnyPool) -> Checkpointer {
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(checkpoint_forever(pool, stopped));
    Checkpointer { _stop: stop }
}

async fn checkpoint_forever(pool: AnyPool, mut stopped: oneshot::Receiver<()>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticker.tick() => {}
        }
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "SQLite WAL checkpoint failed; trying again");
        }
    }
}
