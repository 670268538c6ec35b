//! The state of one run, in one place: the [`RunState`] that `run.rs` owns for the
//! run's whole life and lends (`&mut`) to each phase in turn — streaming a generation,
//! executing a tool round, finishing.
//!
//! It exists so that no phase has to hand the journal writer, the progress or the
//! tool steps back to the one that called it: every phase borrows the same state and
//! returns only how it ended. This module is the bottom of the engine's run modules
//! and calls none of them.

use super::checkpoint::{Progress, SharedProgress};
use super::{EarlyStream, EngineInner, RunJob};
use crate::config::ProviderKind;
use crate::journal::{AppendAnswer, JournalEntry, JournalError, RunEvent};
use crate::telemetry::metrics::ReplyMeter;
use chorus_model::history::ToolStep;
use chorus_providers::{ChatRequest, Usage};
use std::sync::MutexGuard;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a run stopped before it ended by itself. The two end differently: a stop is
/// final (`stopped`, calls in flight answered as cancelled); a shutdown leaves the run
/// `interrupted` and its calls pending, so that it can be continued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Halt {
    /// Someone stopped the run (here, or on another instance through the run row), or
    /// this instance lost its lease.
    Stop,
    /// This instance is shutting down.
    Shutdown,
}

/// Everything one run carries from its start to its end.
pub(super) struct RunState<'a> {
    pub inner: &'a EngineInner,
    pub job: &'a RunJob,
    /// Cancelled by a stop (local or remote) or a lost lease.
    pub stop: &'a CancellationToken,
    /// Text and seq shared with the checkpointer, which saves them in batches.
    progress: SharedProgress,
    /// The journal seq of the last event appended: this task is the run's only writer.
    pub seq: u64,
    /// An append failed for good: the end replaces the lost events with a snapshot.
    pub degraded: bool,
    /// An event was given up on: the next append starts with the text so far as a
    /// snapshot.
    snapshot_due: bool,
    /// The request of the next generation (its history grows by each tool round).
    pub request: ChatRequest,
    /// The tool rounds made and answered so far, saved to the run row at round
    /// boundaries (never per token).
    pub steps: Vec<ToolStep>,
    /// Rounds executed, against `tools.max_steps`.
    pub rounds: u32,
    /// Offset into the run's text where the current assistant segment starts.
    pub segment_from: usize,
    /// Text of the current segment from before this run (a continuation's prefill).
    pub carry: String,
    /// Usage the providers reported, summed over the run's generations.
    pub usage: Option<Usage>,
    /// The provider kind and request of the last attempt that streamed, for a usage
    /// estimate when no provider reported any.
    pub streamed_with: Option<(ProviderKind, ChatRequest)>,
    /// The model that streamed (an alias's fallback may differ from the one asked
    /// for): what the run is charged at.
    pub charged_model: String,
    /// The run's metrics (handles taken once, so streaming records cheaply).
    pub meter: ReplyMeter,
    /// The run's span (`chorus.run`), which the end fills with usage and status.
    pub span: tracing::Span,
    /// Fallbacks taken, for the run's span.
    pub fallbacks: u32,
    /// The first attempt's provider call, sent while the run was admitted; taken by
    /// that attempt (dropped, which cancels it, if the run never makes it).
    pub early: Option<EarlyStream>,
    /// A streamed append whose answer is still to be read ([`RunState::settle`]).
    in_flight: Option<(JournalEntry, AppendAnswer)>,
}

impl<'a> RunState<'a> {
    pub fn new(
        inner: &'a EngineInner,
        job: &'a RunJob,
        stop: &'a CancellationToken,
        progress: SharedProgress,
        meter: ReplyMeter,
    ) -> Self {
        Self {
            inner,
            job,
            stop,
            progress,
            seq: 0,
            degraded: false,
            snapshot_due: false,
            request: job.request.clone(),
            steps: Vec::new(),
            rounds: 0,
            segment_from: 0,
            carry: job.request.prefill.clone().unwrap_or_default(),
            usage: None,
            streamed_with: None,
            charged_model: job.model_ref.clone(),
            meter,
            // The run's task is instrumented with its span.
            span: tracing::Span::current(),
            fallbacks: 0,
            early: None,
            in_flight: None,
        }
    }

    /// The run's progress; held only for a moment, never across an await.
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event with the next seq and waits until the journal has stored it.
    /// A journal outage does not end the run: after three failed attempts the run goes
    /// on `degraded` and ends with a snapshot standing in for what was lost. A retry of
    /// an append whose answer was lost is safe (the journal accepts the entry it
    /// already holds); when an append given up on landed later, the run goes on after
    /// it. After an event was given up on, or when the journal lost the run's earlier
    /// events (Redis restarted without persistence), the text so far goes first as a
    /// snapshot, so readers show the whole reply again at once rather than only at the
    /// end.
    pub async fn append(&mut self, event: RunEvent) {
        self.settle().await;
        self.append_now(event).await;
    }

    /// Appends a streamed event (a delta, which goes into the progress too, or
    /// reasoning) without waiting for the journal's answer: the answer is read when
    /// the next event is appended, or when the run ends, with every rule of
    /// [`RunState::append`]. By then it has come, so the run's task wakes once per
    /// event (for the provider's next token), not twice. Nothing else changes: the
    /// journal stores the event as soon as it would have, and a run has at most one
    /// append on its way.
    pub async fn append_streamed(&mut self, event: RunEvent) {
        // Before the progress grows: a snapshot standing in for a lost append is made
        // from the progress as it was when that append was made.
        self.settle().await;
        if let RunEvent::Delta { text } = &event {
            self.progress().push(text);
        }
        if self.snapshot_due {
            // After a failure: the slow path, which starts with the snapshot.
            self.append_now(event).await;
            self.sync_seq();
            return;
        }
        let entry = JournalEntry {
            seq: self.seq + 1,
            event,
        };
        let mut answer = self.inner.journal.submit(&self.job.run_id, entry.clone());
        match answer.take_ready() {
            // A journal that stores at once (in-process) has answered already.
            Some(outcome) => {
                self.conclude(entry, outcome).await;
                self.sync_seq();
            }
            None => self.in_flight = Some((entry, answer)),
        }
    }

    /// Reads the answer of the streamed append on its way, if any, retrying it or
    /// starting again with a snapshot as [`RunState::append`] would have, and tells the
    /// checkpointer the seq its text now reaches. Everything that reads `seq` or
    /// `degraded`, or appends, settles first.
    pub async fn settle(&mut self) {
        let Some((entry, answer)) = self.in_flight.take() else {
            return;
        };
        let outcome = answer.await;
        self.conclude(entry, outcome).await;
        self.sync_seq();
    }

    /// [`RunState::append`] without settling first.
    async fn append_now(&mut self, event: RunEvent) {
        if self.snapshot_due {
            self.snapshot_due = false;
            if !matches!(event, RunEvent::Snapshot { .. })
                && !self.append_one(self.snapshot_before(&event)).await
            {
                self.snapshot_due = true;
                return;
            }
        }
        if let Some(lost) = self.try_append(event).await {
            self.snapshot_in_place_of(lost).await;
        }
    }

    /// Completes an append from its first attempt's outcome; a journal that lost the
    /// run's earlier events takes the snapshot in place of them, then the event.
    async fn conclude(&mut self, entry: JournalEntry, outcome: Result<(), JournalError>) {
        if let Some(lost) = self.complete_append(entry, outcome).await {
            self.snapshot_in_place_of(lost).await;
        }
    }

    /// The journal lost the run's earlier events: it takes the snapshot in place of
    /// what it lost, then `lost`, the event it refused.
    async fn snapshot_in_place_of(&mut self, lost: RunEvent) {
        if self.append_one(self.snapshot_before(&lost)).await {
            self.append_one(lost).await;
        }
    }

    /// The run's text before `event` as a snapshot (a delta is in the progress
    /// already, and follows the snapshot itself: readers that skip snapshots, such as
    /// the gateway's, still get it).
    fn snapshot_before(&self, event: &RunEvent) -> RunEvent {
        let mut text = self.progress().text.clone();
        if let RunEvent::Delta { text: delta } = event
            && text.ends_with(delta.as_str())
        {
            text.truncate(text.len() - delta.len());
        }
        RunEvent::Snapshot { text }
    }

    /// [`RunState::append_one`]; whether it was stored.
    async fn append_one(&mut self, event: RunEvent) -> bool {
        match self.try_append(event).await {
            None => !self.snapshot_due,
            Some(_) => {
                self.snapshot_due = true;
                false
            }
        }
    }

    /// Up to three attempts at appending `event`; returns it back when the journal
    /// lost the run's earlier events (it must start again with a snapshot). Giving
    /// up marks the run degraded and a snapshot due.
    async fn try_append(&mut self, event: RunEvent) -> Option<RunEvent> {
        let entry = JournalEntry {
            seq: self.seq + 1,
            event,
        };
        let outcome = self
            .inner
            .journal
            .submit(&self.job.run_id, entry.clone())
            .await;
        self.complete_append(entry, outcome).await
    }

    /// [`RunState::try_append`] from its first attempt's `outcome`: the attempts left.
    async fn complete_append(
        &mut self,
        mut entry: JournalEntry,
        mut outcome: Result<(), JournalError>,
    ) -> Option<RunEvent> {
        let mut attempt = 0u32;
        loop {
            match outcome {
                Ok(()) => {
                    self.seq = entry.seq;
                    return None;
                }
                // This task is the run's only writer: a seq past ours is an earlier
                // event of ours that landed after we gave up on it.
                Err(JournalError::OutOfOrder { expected, .. }) if expected > entry.seq => {
                    tracing::warn!(run = %self.job.run_id, from = entry.seq, to = expected, "journal append: an earlier append landed late; going on after it");
                    self.degraded = true;
                    entry.seq = expected;
                }
                Err(JournalError::Lost { .. })
                    if !matches!(entry.event, RunEvent::Snapshot { .. }) =>
                {
                    tracing::warn!(run = %self.job.run_id, seq = entry.seq, "the journal lost the run's earlier events; starting them again with a snapshot");
                    return Some(entry.event);
                }
                Err(e) => {
                    tracing::warn!(run = %self.job.run_id, error = %e, attempt, "journal append failed");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
            attempt += 1;
            if attempt == 3 {
                break;
            }
            outcome = self
                .inner
                .journal
                .submit(&self.job.run_id, entry.clone())
                .await;
        }
        self.degraded = true;
        self.snapshot_due = true;
        None
    }

    /// Tells the checkpointer which journal seq the progress's text reaches.
    pub fn sync_seq(&self) {
        let seq = self.seq;
        self.progress().seq = seq;
    }

    /// Writes the steps to the run row (once per round boundary, not per token).
    pub async fn save_steps(&self) {
        if let Err(e) = self
            .inner
            .store
            .save_tool_steps(&self.job.run_id, &self.inner.settings.owner, &self.steps)
            .await
        {
            tracing::warn!(run = %self.job.run_id, error = %e, "could not save the run's tool steps");
        }
    }
}

/// The sum of two generations' usage; a generation that reported none adds nothing.
pub(super) fn add_usage(total: Option<Usage>, more: Option<Usage>) -> Option<Usage> {
    match (total, more) {
        (Some(a), Some(b)) => Some(Usage {
            prompt_tokens: a.prompt_tokens + b.prompt_tokens,
            completion_tokens: a.completion_tokens + b.completion_tokens,
            cached_prompt_tokens: a.cached_prompt_tokens + b.cached_prompt_tokens,
            reasoning_tokens: a.reasoning_tokens + b.reasoning_tokens,
            estimated: a.estimated || b.estimated,
        }),
        (a, b) => a.or(b),
    }
}
