//! Batched reads: the reads of one kind that wait at the same moment are answered
//! by one statement, on PostgreSQL, where each read on its own costs a round trip,
//! an executor start and a turn of a connection of the pool.
//!
//! A burst of new messages makes as many reads of their conversations as there are
//! messages, all at once: each queued for one of the pool's connections, each a
//! server process's round trip. Here a few lanes take the reads: a free lane takes
//! every read queued at that moment (at most [`MAX_BATCH`]) and answers them all
//! from one statement, so the queue drains in a few statements whatever its length.
//! A read waits for no timer: alone, it is read at once, as before; the lanes only
//! gather what is already waiting while they are busy.
//!
//! When the batched statement fails, each read of the batch is read again on its
//! own, so every caller gets its own answer or its own error.

use crate::StoreError;
use crate::lanes::{self, SharedQueue};
use sqlx::AnyPool;
use std::future::Future;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// The most reads one statement answers.
const MAX_BATCH: usize = 128;

/// A read that several callers' keys can share one statement.
pub(crate) trait ReadMany: Send + Sync + 'static {
    type Key: Send + Sync + 'static;
    type Value: Send + 'static;

    /// The values of `keys`, in order, one each.
    fn read_many(
        pool: &AnyPool,
        keys: &[&Self::Key],
    ) -> impl Future<Output = Result<Vec<Self::Value>, StoreError>> + Send;

    /// The value of `key` alone (a failed batch's reads, again one by one).
    fn read_one(
        pool: &AnyPool,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Self::Value, StoreError>> + Send;
}

/// One caller's read and where its answer goes.
struct Job<R: ReadMany> {
    key: R::Key,
    answer: oneshot::Sender<Result<R::Value, StoreError>>,
    queued: Instant,
}

/// The queue of one kind of read and its lanes. Cloning it shares them; the lanes
/// end when the last clone is dropped.
pub(crate) struct ReadLanes<R: ReadMany> {
    queue: mpsc::UnboundedSender<Job<R>>,
}

impl<R: ReadMany> Clone for ReadLanes<R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<R: ReadMany> ReadLanes<R> {
    /// Starts `lanes` tasks reading on `pool` (each holds one of its connections
    /// while it reads).
    pub(crate) fn start(pool: AnyPool, lanes: usize) -> Self {
        let (queue, rx) = lanes::queue();
        for _ in 0..lanes.max(1) {
            tokio::spawn(read_forever::<R>(pool.clone(), rx.clone()));
        }
        Self { queue }
    }

    /// Reads `key`, with whatever other reads are waiting when a lane is free.
    pub(crate) async fn read(&self, key: R::Key) -> Result<R::Value, StoreError> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            key,
            answer,
            queued: Instant::now(),
        };
        self.queue.send(job).map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

/// The lanes are gone (the store is closing): as a closed pool answers.
fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// One lane: answers every read queued when it is free (`lanes.rs`), again.
async fn read_forever<R: ReadMany>(pool: AnyPool, queue: SharedQueue<Job<R>>) {
    // A caller that went away (its request dropped) needs no answer.
    while let Some(batch) =
        lanes::next_batch(&queue, MAX_BATCH, |job| !job.answer.is_closed()).await
    {
        if batch.is_empty() {
            continue;
        }
        let (size, oldest) = (batch.len(), batch.iter().map(|job| job.queued).min());
        crate::timed_batch("read_batch", "read", size, oldest, answer(&pool, batch)).await;
    }
}

/// Reads `batch` in one statement, or each alone when that fails, and answers each.
async fn answer<R: ReadMany>(pool: &AnyPool, batch: Vec<Job<R>>) {
    let keys: Vec<&R::Key> = batch.iter().map(|job| &job.key).collect();
    match R::read_many(pool, &keys).await {
        Ok(values) if values.len() == batch.len() => {
            for (job, value) in batch.into_iter().zip(values) {
                let _ = job.answer.send(Ok(value));
            }
        }
        outcome => {
            let error = match outcome {
                Ok(values) => format!("{} reads gave {} values", batch.len(), values.len()),
                Err(e) => e.to_string(),
            };
            tracing::warn!(reads = batch.len(), error = %error, "a batched read failed; reading each alone");
            for job in batch {
                let value = R::read_one(pool, &job.key).await;
                let _ = job.answer.send(value);
            }
        }
    }
}
