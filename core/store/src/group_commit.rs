//! Group commit for the SQLite writer: the per-run writes (a run's admission and its
//! end) of concurrent runs share one transaction.
//!
//! SQLite has one writer at a time and every statement is a round trip to the
//! connection's worker thread, so on a busy instance the writer connection is the
//! queue every run waits in: each run paid its own `BEGIN IMMEDIATE` and `COMMIT`
//! (and its own WAL frames for the same few index pages). Here one task owns those
//! writes: it takes every write waiting at that moment (at most [`MAX_BATCH`]) and
//! applies them one after another in one transaction, then answers each once the
//! commit is done. A batch waits for no timer, only for the batch before it.
//!
//! The guarantees are those of one transaction per write: the writes of a batch run
//! in order, each seeing the ones before it (an admission counts the runs and
//! reservations admitted just before it in the same batch), nothing is answered
//! before it is committed, and nothing half-written is ever committed: when any write
//! of a batch fails, the whole batch is rolled back and applied once more, each write
//! in a savepoint of one transaction. A write the state refuses (balance,
//! concurrency, a conflict, a row not found) is rolled back to its savepoint and
//! answered with its refusal — a refused admission writes nothing, exactly as alone —
//! while the others go on and commit together: a burst over a spent balance costs two
//! transactions, not one per write. Any other failure there (a database error) runs
//! each write of the batch alone, in its own transaction, as without batching.
//!
//! Only the writer of a SQLite file batches (PostgreSQL runs concurrent transactions
//! on many connections, and one transaction locking the rows of many accounts could
//! deadlock with a merge).

use super::StoreError;
use crate::Tx;
use futures::future::BoxFuture;
use sqlx::AnyPool;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction takes (a bound on how long a batch holds the
/// write lock and on what a failed batch runs again alone).
pub(crate) const MAX_BATCH: usize = 128;

/// One write: applied in a transaction it does not own (it never commits).
/// It may be applied more than once (a failed batch is applied again), so it keeps no state
/// between tries beyond its result.
pub(crate) type WriteFn<T> =
    Box<dyn for<'t> Fn(&'t mut Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync>;

/// Boxes a write (the bound gives the closure its higher-ranked signature).
pub(crate) fn write_fn<T, F>(write: F) -> WriteFn<T>
where
    F: for<'t> Fn(&'t mut Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync + 'static,
{
    Box::new(write)
}

/// A write kept as a value (its rows, ids and admission), applied by reference, as
/// often as its batch needs ([`WriteFn`]).
pub(crate) trait Apply: Send + Sync + 'static {
    type Output: Send + 'static;
    fn apply(
        &self,
        tx: &mut Tx,
    ) -> impl std::future::Future<Output = Result<Self::Output, StoreError>> + Send;
}

/// The [`WriteFn`] of an [`Apply`] value: each try applies the same shared value.
pub(crate) fn shared_write<W: Apply>(write: W) -> WriteFn<W::Output> {
    let write = std::sync::Arc::new(write);
    write_fn(move |tx| {
        let write = write.clone();
        Box::pin(async move { write.apply(tx).await })
    })
}

/// A write waiting for its batch, its result type erased.
trait Job: Send {
    /// Applies the write in `tx`, keeping its result until the batch commits.
    fn apply<'t>(&'t mut self, tx: &'t mut Tx) -> BoxFuture<'t, Result<(), StoreError>>;
    /// Keeps `refusal` as the write's answer (its savepoint was rolled back).
    fn refuse(&mut self, refusal: StoreError);
    /// Answers the caller: the kept result, or `error` when the batch failed.
    fn answer(self: Box<Self>, error: Option<StoreError>);
    /// Whether the caller has gone away (its future was dropped) before the write
    /// ran: then it is not written, as a dropped transaction would have rolled back.
    fn abandoned(&self) -> bool;
    /// When the write was queued.
    fn queued(&self) -> Instant;
}

struct TypedJob<T> {
    queued: Instant,
    write: WriteFn<T>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static> Job for TypedJob<T> {
    fn apply<'t>(&'t mut self, tx: &'t mut Tx) -> BoxFuture<'t, Result<(), StoreError>> {
        Box::pin(async move {
            match (self.write)(tx).await {
                Ok(value) => {
                    self.result = Some(Ok(value));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    fn refuse(&mut self, refusal: StoreError) {
        self.result = Some(Err(refusal));
    }

    fn answer(self: Box<Self>, error: Option<StoreError>) {
        let result = match (error, self.result) {
            (Some(e), _) => Err(e),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Corrupt(
                "a batched write was answered before it ran".into(),
            )),
        };
        // The caller may have gone away since; the write stands either way.
        let _ = self.reply.send(result);
    }

    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn queued(&self) -> Instant {
        self.queued
    }
}

/// The handle writes are queued on. Cheap to clone; the task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl GroupCommit {
    /// Starts the task that commits the writes queued on the returned handle, on the
    /// writer `pool` (one connection).
    pub(crate) fn start(pool: AnyPool) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_forever(pool, rx));
        Self { queue }
    }

    /// Applies `write` in the next batch; returns its result once committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        write: WriteFn<T>,
    ) -> Result<T, StoreError> {
        self.enqueue(write)?.await
    }

    /// Queues `write` now, behind every write queued before it and ahead of every
    /// write queued after; the returned future answers once it is committed. Dropping
    /// that future before the write's batch began leaves the write unwritten.
    pub(crate) fn enqueue<T: Send + 'static>(
        &self,
        write: WriteFn<T>,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + use<T>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            queued: Instant::now(),
            write,
            result: None,
            reply,
        });
        self.queue
            .send(job)
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        Ok(async move {
            answer
                .await
                .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
        })
    }
}

async fn commit_forever(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut batch = std::mem::take(&mut jobs);
        batch.retain(|job| !job.abandoned());
        if batch.is_empty() {
            continue;
        }
        if crate::timing() {
            let started = Instant::now();
            let waited = batch
                .iter()
                .map(|job| started.duration_since(job.queued()))
                .max()
                .unwrap_or_default();
            let size = batch.len();
            commit_any(&pool, batch).await;
            tracing::info!(
                target: "chorus_core::telemetry::timing",
                "group_commit size={size} wait={} write={}",
                waited.as_micros(),
                started.elapsed().as_micros()
            );
            continue;
        }
        commit_any(&pool, batch).await;
    }
}

/// Commits `batch`: alone when it is one write, else together.
async fn commit_any(pool: &AnyPool, batch: Vec<Box<dyn Job>>) {
    if batch.len() == 1 {
        for job in batch {
            alone(pool, job).await;
        }
        return;
    }
    commit_batch(pool, batch).await;
}

/// Applies every write of `batch` in one transaction and answers them after the
/// commit; if any fails (or the commit does), rolls back and applies them again with
/// a savepoint each ([`with_savepoints`]).
async fn commit_batch(pool: &AnyPool, mut batch: Vec<Box<dyn Job>>) {
    let size = batch.len();
    let failed = match begin(pool).await {
        Err(e) => Some(StoreError::from(e)),
        Ok(mut tx) => {
            let mut failure = None;
            for job in batch.iter_mut() {
                if let Err(e) = job.apply(&mut tx).await {
                    failure = Some(e);
                    break;
                }
            }
            match failure {
                // Dropping the transaction rolls it back.
                Some(e) => Some(e),
                None => tx.commit().await.err().map(StoreError::from),
            }
        }
    };
    match failed {
        None => {
            tracing::trace!(size, "group commit");
            for job in batch {
                job.answer(None);
            }
        }
        Some(e) => {
            tracing::debug!(size, error = %e, "a batched write failed; applying the batch again with a savepoint per write");
            with_savepoints(pool, batch).await;
        }
    }
}

/// Whether a write's error is the stored state refusing it (answered as such, the
/// batch going on), rather than the database failing (the batch runs alone).
fn is_refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Refused(_) | StoreError::Conflict(_) | StoreError::NotFound(_)
    )
}

/// Applies every write of `batch` in one transaction, each in its own savepoint: a
/// refused write is rolled back to its savepoint and keeps its refusal as its answer,
/// the others commit together. On any other failure the transaction is dropped
/// (rolled back) and each write runs alone.
async fn with_savepoints(pool: &AnyPool, mut batch: Vec<Box<dyn Job>>) {
    let result = async {
        let mut tx = begin(pool).await?;
        for job in batch.iter_mut() {
            savepoint(&mut tx, "SAVEPOINT chorus_group").await?;
            match job.apply(&mut tx).await {
                Ok(()) => {}
                Err(e) if is_refusal(&e) => {
                    savepoint(&mut tx, "ROLLBACK TO chorus_group").await?;
                    job.refuse(e);
                }
                Err(e) => return Err(e),
            }
            savepoint(&mut tx, "RELEASE chorus_group").await?;
        }
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            for job in batch {
                job.answer(None);
            }
        }
        Err(e) => {
            tracing::debug!(size = batch.len(), error = %e, "a batched write failed with savepoints; running each write of the batch alone");
            for job in batch {
                alone(pool, job).await;
            }
        }
    }
}

async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), StoreError> {
    sqlx::query(statement).execute(&mut **tx).await?;
    Ok(())
}

/// Applies one write in its own transaction and answers it.
async fn alone(pool: &AnyPool, mut job: Box<dyn Job>) {
    if job.abandoned() {
        return;
    }
    let result = async {
        let mut tx = begin(pool).await?;
        job.apply(&mut tx).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    job.answer(result.err());
}

async fn begin(pool: &AnyPool) -> Result<Tx, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}
