//! The journal: the ordered events of each run, and the only way any surface reads a
//! run. A reader asks for the events after a sequence number and gets the backlog,
//! then live events, with no gap and no repeat, ending after `finished`.
//!
//! Two backends: [`MemoryJournal`] (one instance) and [`RedisJournal`] (Redis Streams,
//! shared by every instance of a deployment).

mod memory;
mod redis;

pub use memory::MemoryJournal;
pub use redis::RedisJournal;

use chorus_model::ids::{ConversationId, RunId};
use futures::Stream;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use sync_wrapper::SyncWrapper;

/// One event of a run. Serialized with its kind in `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began. `prefix` is the message text before this run (non-empty for a
    /// continuation), so a reader can show the whole message.
    Started {
        message_id: String,
        model: String,
        prefix: String,
    },
    /// Generated text.
    Delta { text: String },
    /// Reasoning text, shown apart from the answer.
    Reasoning { text: String },
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        /// Of the prompt tokens, those served from the provider's cache.
        #[serde(default)]
        cached_prompt_tokens: u64,
        /// Of the completion tokens, those spent on hidden reasoning.
        #[serde(default)]
        reasoning_tokens: u64,
        estimated: bool,
    },
    /// The model called a tool (arguments as JSON).
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
    },
    /// What a tool call returned (or why it failed: `is_error`), answering the
    /// `tool_call` with id `call_id`; `truncated` when the output was cut to the limit.
    ToolResult {
        call_id: String,
        name: String,
        output: String,
        is_error: bool,
        truncated: bool,
        /// Structured detail of the result for clients, when the tool gives one: the
        /// code sandbox's execution (exit code, `files` it wrote...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    /// A model of the run's fallback chain failed before its first token; the run
    /// goes on with the next one.
    Fallback {
        from: String,
        to: String,
        reason: String,
    },
    /// The whole text of the run so far, sent in place of events a journal no longer
    /// holds (after a restart of an in-process journal, or past retention).
    Snapshot { text: String },
    /// The run ended: `status` is its final status, `reason` why.
    Finished {
        status: String,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
    },
}

impl RunEvent {
    /// The event's kind, as used for the SSE `event:` field.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Started { .. } => "started",
            RunEvent::Delta { .. } => "delta",
            RunEvent::Reasoning { .. } => "reasoning",
            RunEvent::Usage { .. } => "usage",
            RunEvent::Fallback { .. } => "fallback",
            RunEvent::ToolCall { .. } => "tool_call",
            RunEvent::ToolResult { .. } => "tool_result",
            RunEvent::Snapshot { .. } => "snapshot",
            RunEvent::Finished { .. } => "finished",
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, RunEvent::Finished { .. })
    }
}

/// An event with its per-run sequence number (1, 2, 3, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: u64,
    pub event: RunEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("corrupt journal entry: {0}")]
    Corrupt(String),
    /// The journal no longer holds the run's earlier events (Redis restarted without
    /// persistence): only the run's first event or a snapshot may start it again.
    #[error("the journal lost the earlier events of run {run}")]
    Lost { run: String },
    #[error("sequence {got} out of order for run {run} (expected {expected})")]
    OutOfOrder {
        run: String,
        expected: u64,
        got: u64,
    },
}

pub type EntryStream = Pin<Box<dyn Stream<Item = Result<JournalEntry, JournalError>> + Send>>;

/// A run began in a conversation (a new run, a continuation, a regeneration): every
/// surface bound to the conversation, on any instance, may show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStarted {
    pub conversation_id: ConversationId,
    pub run_id: RunId,
}

/// The run starts announced from now on, on any instance sharing the journal.
pub type RunStartStream = Pin<Box<dyn Stream<Item = RunStarted> + Send>>;

/// How many announcements a subscriber may fall behind before it skips some.
const RUN_STARTS_BUFFER: usize = 256;

/// A subscriber's stream of a local broadcast of announcements: one that lags logs
/// what it missed and goes on.
fn run_start_stream(rx: tokio::sync::broadcast::Receiver<RunStarted>) -> RunStartStream {
    use tokio::sync::broadcast::error::RecvError;
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(started) => return Some((started, rx)),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "run-start announcements skipped by a slow reader")
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
}

/// The answer to an append handed to the journal with [`Journal::submit`]. The append
/// is on its way whether or not this is ever awaited; awaiting it only reads how it
/// went. A journal that stores at once answers without an allocation.
pub struct AppendAnswer(Answer);

enum Answer {
    Done(Option<Result<(), JournalError>>),
    /// Only ever polled through `&mut`, so the answer can sit in a run's state, which
    /// is shared (`&`) across awaits.
    Waiting(SyncWrapper<BoxFuture<'static, Result<(), JournalError>>>),
}

impl AppendAnswer {
    /// An append that has already been stored, or refused.
    pub fn done(outcome: Result<(), JournalError>) -> Self {
        Self(Answer::Done(Some(outcome)))
    }

    /// The answer, when the journal gave it at once (it stored or refused the entry
    /// in `submit`); `None` when it comes later. Looks without polling, so a caller
    /// that would only check for a ready answer does no work for one that is not.
    pub fn take_ready(&mut self) -> Option<Result<(), JournalError>> {
        match &mut self.0 {
            Answer::Done(outcome) => outcome.take(),
            Answer::Waiting(_) => None,
        }
    }

    /// An append whose answer comes later.
    pub fn waiting(
        answer: impl Future<Output = Result<(), JournalError>> + Send + 'static,
    ) -> Self {
        Self(Answer::Waiting(SyncWrapper::new(Box::pin(answer))))
    }
}

impl Future for AppendAnswer {
    type Output = Result<(), JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Answer::Done(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("an append's answer is read at most once"),
            ),
            Answer::Waiting(answer) => answer.get_mut().as_mut().poll(cx),
        }
    }
}

/// Where runs' events are kept and read.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// Hands the next event of `run` to the journal and returns its answer without
    /// waiting for it: a run's task reads the answer when it has its next event, by
    /// which time it has come, so the task wakes once per event instead of twice.
    /// A run's writer reads one answer before it submits the run's next entry, so a
    /// journal never has two appends of one run on their way to order.
    ///
    /// Exactly one writer per run (the lease holder) assigns `entry.seq`, one more than
    /// the last. Appending the very entry the journal already holds at that seq
    /// succeeds, so a retry after a lost answer is safe; any other seq fails with
    /// [`JournalError::OutOfOrder`], whose `expected` is the seq the journal would take
    /// next. An event appended to a run whose earlier events the journal lost fails
    /// with [`JournalError::Lost`] unless it is the run's first (seq 1) or a
    /// [`RunEvent::Snapshot`], which start the run's events again.
    fn submit(&self, run: &RunId, entry: JournalEntry) -> AppendAnswer;

    /// Appends the next event of `run` and waits until it is stored
    /// ([`Journal::submit`], awaited).
    async fn append(&self, run: &RunId, entry: JournalEntry) -> Result<(), JournalError> {
        self.submit(run, entry).await
    }

    /// The events after `after` and then live ones, ending after `finished`. A run the
    /// journal does not know yet is waited for.
    fn follow(&self, run: &RunId, after: u64) -> EntryStream;

    /// The events after `after` held now, without waiting.
    async fn backlog(&self, run: &RunId, after: u64) -> Result<Vec<JournalEntry>, JournalError>;

    /// Whether the journal holds any event of `run` (false after a restart of an
    /// in-process journal, or once retention dropped it).
    async fn has_run(&self, run: &RunId) -> Result<bool, JournalError>;

    /// Announces that a run started (once per run, by the instance that starts it),
    /// to every [`Journal::run_starts`] subscriber of every instance.
    async fn announce_run_start(&self, started: &RunStarted) -> Result<(), JournalError>;

    /// The runs announced from now on (none from before the call), on any instance.
    fn run_starts(&self) -> RunStartStream;

    /// Whether the journal backend answers (for `/readyz`).
    async fn ping(&self) -> bool;
}
