//! Group commit: the per-run writes (a run's admission and its end) of concurrent
//! runs share one transaction, on SQLite's writer; on PostgreSQL, new turns do.
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
//! Writes of one kind queued next to each other (new turns: [`ApplyMany`]) are applied
//! together, in a few set-based statements for all of them instead of a round trip
//! to the connection's worker thread each: their decisions are taken in queue order
//! (in Rust, on what one read returned, or by the statements' own conditions), and a
//! refused write is simply left out of the statements, so it writes nothing and costs
//! the batch no savepoint. The batch's other writes still run one after another
//! around them.
//!
//! On a SQLite file every write of the writer connection goes through one lane.
//! On PostgreSQL, which runs concurrent transactions on many connections, only new
//! turns whose admission cannot refuse them are batched ([`ApplyMany::combinable`]),
//! on a few lanes (each a connection of its own, taking whatever is queued when it is
//! free): a burst's turns then wait for a lane, not for the shared pool's
//! connections, and cost a statement per batch. Such a batch locks its accounts'
//! rows in id order, as merges do, so it cannot deadlock with them or with another
//! batch (`runs/turn/set_postgres.rs`).

use super::StoreError;
use crate::lanes::{self, SharedQueue};
use crate::{Backend, Tx};
use futures::future::BoxFuture;
use sqlx::AnyPool;
use std::any::{Any, TypeId};
use std::sync::Arc;
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
    shared_write_of(Arc::new(write))
}

fn shared_write_of<W: Apply>(write: Arc<W>) -> WriteFn<W::Output> {
    write_fn(move |tx| {
        let write = write.clone();
        Box::pin(async move { write.apply(tx).await })
    })
}

/// A write that a batch applies together with the writes of its kind queued next to
/// it, in a few set-based statements for all of them ([`ApplyMany::apply_many`]);
/// alone (and when a batch is applied again with savepoints) through [`Apply`].
pub(crate) trait ApplyMany: Apply<Output = ()> {
    /// Applies `writes` in `tx` as if one after another, each seeing the ones before
    /// it. Returns each write's answer, in order: `Ok`, or the refusal of a write that
    /// wrote nothing. An `Err` is the database failing: the batch's transaction is
    /// then rolled back and its writes applied again one by one.
    fn apply_many(
        writes: &[&Self],
        tx: &mut Tx,
    ) -> impl std::future::Future<Output = Result<Vec<Result<(), StoreError>>, StoreError>> + Send;

    /// Whether this write can be applied with others (it may carry something the
    /// set-based statements cannot); when not, it is applied on its own.
    fn combinable(&self) -> bool {
        true
    }
}

/// The answers of writes applied together, or the database's failure.
type ManyAnswers = Result<Vec<Result<(), StoreError>>, StoreError>;

/// [`ApplyMany::apply_many`] of one write type, its values erased.
type ManyFn = for<'t> fn(&'t mut Tx, Vec<Arc<dyn Any + Send + Sync>>) -> BoxFuture<'t, ManyAnswers>;

/// What a job applied together with its neighbours gives its batch.
struct Together {
    /// Jobs are applied together only with jobs of the same type.
    kind: TypeId,
    value: Arc<dyn Any + Send + Sync>,
    apply: ManyFn,
}

fn apply_many_erased<W: ApplyMany>(
    tx: &mut Tx,
    values: Vec<Arc<dyn Any + Send + Sync>>,
) -> BoxFuture<'_, ManyAnswers> {
    Box::pin(async move {
        let writes = values
            .into_iter()
            .map(|value| value.downcast::<W>())
            .collect::<Result<Vec<Arc<W>>, _>>()
            .map_err(|_| StoreError::Corrupt("writes of two kinds were applied together".into()))?;
        let refs: Vec<&W> = writes.iter().map(|write| &**write).collect();
        let answers = W::apply_many(&refs, tx).await?;
        if answers.len() != refs.len() {
            return Err(StoreError::Corrupt(format!(
                "{} writes applied together gave {} answers",
                refs.len(),
                answers.len()
            )));
        }
        Ok(answers)
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
    /// The write's set-based form, when it can be applied with its neighbours.
    fn together(&self) -> Option<Together> {
        None
    }
    /// Keeps the answer it was given when applied with its neighbours.
    fn settle(&mut self, answer: Result<(), StoreError>);
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

    fn settle(&mut self, answer: Result<(), StoreError>) {
        // Never applied with others (it has no `together`): an `Ok` here would be a bug.
        self.result = Some(answer.and_then(|()| {
            Err(StoreError::Corrupt(
                "a write without a set-based form was applied with others".into(),
            ))
        }));
    }
}

/// A write of an [`ApplyMany`] type waiting for its batch: alone, the [`TypedJob`] of
/// its [`Apply`]; beside writes of its type, its value for their set-based form.
struct ManyJob<W> {
    job: TypedJob<()>,
    write: Arc<W>,
}

impl<W: ApplyMany> Job for ManyJob<W> {
    fn apply<'t>(&'t mut self, tx: &'t mut Tx) -> BoxFuture<'t, Result<(), StoreError>> {
        self.job.apply(tx)
    }

    fn refuse(&mut self, refusal: StoreError) {
        self.job.refuse(refusal);
    }

    fn answer(self: Box<Self>, error: Option<StoreError>) {
        Box::new(self.job).answer(error);
    }

    fn abandoned(&self) -> bool {
        self.job.abandoned()
    }

    fn queued(&self) -> Instant {
        self.job.queued()
    }

    fn together(&self) -> Option<Together> {
        self.write.combinable().then(|| Together {
            kind: TypeId::of::<W>(),
            value: self.write.clone(),
            apply: apply_many_erased::<W>,
        })
    }

    fn settle(&mut self, answer: Result<(), StoreError>) {
        self.job.result = Some(answer);
    }
}

/// The handle writes are queued on. Cheap to clone; the task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
    /// The lanes' connections.
    pool: AnyPool,
}

impl GroupCommit {
    /// Starts `lanes` tasks that commit the writes queued on the returned handle on
    /// `pool` (a connection per lane), each taking every write queued when it is
    /// free. Writes are applied in queue order only with one lane (SQLite's writer).
    pub(crate) fn start(pool: AnyPool, backend: Backend, lanes: usize) -> Self {
        let (queue, rx) = lanes::queue();
        for _ in 0..lanes.max(1) {
            tokio::spawn(commit_forever(pool.clone(), backend, rx.clone()));
        }
        Self { queue, pool }
    }

    /// Closes the lanes' connections: a write queued after this fails.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
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
        self.send(job, answer)
    }

    /// Applies `write` in the next batch, together with the writes of its type queued
    /// next to it ([`ApplyMany`]); returns its answer once committed.
    pub(crate) async fn write_many<W: ApplyMany>(&self, write: W) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = Arc::new(write);
        let job = Box::new(ManyJob {
            job: TypedJob {
                queued: Instant::now(),
                write: shared_write_of(write.clone()),
                result: None,
                reply,
            },
            write,
        });
        self.send(job, answer)?.await
    }

    fn send<T: Send + 'static>(
        &self,
        job: Box<dyn Job>,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + use<T>, StoreError> {
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

/// One lane: commits every write queued when it is free (`lanes.rs`), again.
async fn commit_forever(pool: AnyPool, backend: Backend, rx: SharedQueue<Box<dyn Job>>) {
    let lane = Lane { pool, backend };
    while let Some(batch) = lanes::next_batch(&rx, MAX_BATCH, |job| !job.abandoned()).await {
        if batch.is_empty() {
            continue;
        }
        let (size, oldest) = (batch.len(), batch.iter().map(|job| job.queued()).min());
        crate::timed_batch(
            "group_commit",
            "write",
            size,
            oldest,
            commit_any(&lane, batch),
        )
        .await;
    }
}

/// Where one lane commits: its pool, and how a write transaction begins there.
struct Lane {
    pool: AnyPool,
    backend: Backend,
}

impl Lane {
    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// Commits `batch`: alone when it is one write, else together.
async fn commit_any(lane: &Lane, batch: Vec<Box<dyn Job>>) {
    if batch.len() == 1 {
        for job in batch {
            alone(lane, job).await;
        }
        return;
    }
    commit_batch(lane, batch).await;
}

/// Applies every write of `batch` in one transaction and answers them after the
/// commit; if any fails (or the commit does), rolls back and applies them again with
/// a savepoint each ([`with_savepoints`]).
async fn commit_batch(lane: &Lane, mut batch: Vec<Box<dyn Job>>) {
    let size = batch.len();
    let failed = match lane.begin().await {
        Err(e) => Some(StoreError::from(e)),
        Ok(mut tx) => match apply_in_order(&mut tx, &mut batch).await {
            // Dropping the transaction rolls it back.
            Err(e) => Some(e),
            Ok(()) => tx.commit().await.err().map(StoreError::from),
        },
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
            with_savepoints(lane, batch).await;
        }
    }
}

/// Applies the writes of `batch` one after another in `tx`, those queued next to
/// writes of their kind together ([`ApplyMany`]). Stops at the first failure: a write
/// applied alone failing (even refused), or the database failing under writes
/// applied together (their refusals are answers, not failures).
async fn apply_in_order(tx: &mut Tx, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut start = 0;
    while start < batch.len() {
        let Some(first) = batch[start].together() else {
            batch[start].apply(tx).await?;
            start += 1;
            continue;
        };
        let mut values = vec![first.value];
        for job in &batch[start + 1..] {
            match job.together() {
                Some(next) if next.kind == first.kind => values.push(next.value),
                _ => break,
            }
        }
        let end = start + values.len();
        if values.len() == 1 {
            batch[start].apply(tx).await?;
        } else {
            let answers = (first.apply)(tx, values).await?;
            for (job, answer) in batch[start..end].iter_mut().zip(answers) {
                job.settle(answer);
            }
        }
        start = end;
    }
    Ok(())
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
async fn with_savepoints(lane: &Lane, mut batch: Vec<Box<dyn Job>>) {
    let result = async {
        let mut tx = lane.begin().await?;
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
                alone(lane, job).await;
            }
        }
    }
}

async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), StoreError> {
    sqlx::query(statement).execute(&mut **tx).await?;
    Ok(())
}

/// Applies one write in its own transaction and answers it.
async fn alone(lane: &Lane, mut job: Box<dyn Job>) {
    if job.abandoned() {
        return;
    }
    let result = async {
        let mut tx = lane.begin().await?;
        job.apply(&mut tx).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    job.answer(result.err());
}
