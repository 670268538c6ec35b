//! The engine: starts runs as tasks owned by the server (never by the request that
//! asked), streams them from providers into the journal, checkpoints their text in
//! batches, and hands stops to whichever instance holds a run's lease.
//!
//! A run's modules call one way only, so a run reads top to bottom: `run.rs` drives
//! it and lends its `RunState` (`state.rs`) to `step.rs` (one generation over the fallback
//! chain, which hands each stream to `stream.rs`), `tool_round.rs` (one round of tool
//! calls) and `finish.rs` (the one final write); none of them calls back up.

mod checkpoint;
mod early;
mod finish;
mod run;
mod state;
mod step;
mod stream;
mod sweeper;
mod tool_round;

pub(crate) use early::EarlyStream;

use crate::journal::{Journal, RunStarted};
use crate::quota::PriceTable;
use crate::tools::ToolHost;
use chorus_model::ids::RunId;
use chorus_providers::{ChatRequest, ProviderRegistry};
use chorus_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use tracing::field::Empty;

/// Timing of leases and checkpoints, and the prices runs are charged at.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Name of this instance, the owner written on its run leases.
    pub owner: String,
    pub lease_ttl: Duration,
    pub checkpoint_interval: Duration,
    /// What a run's usage costs, charged in the transaction that ends it.
    pub prices: Arc<PriceTable>,
    /// Whether spans carry the reply's text (`telemetry.include_content`).
    pub include_content: bool,
}

/// What a run task needs to generate.
pub(crate) struct RunJob {
    pub run_id: RunId,
    /// Whose run it is, for tools that work per account and conversation.
    pub tool_context: crate::tools::ToolCallContext,
    pub message_id: String,
    pub model_ref: String,
    pub request: ChatRequest,
    /// Message text before this run (the partial text a continuation extends).
    pub prefix: String,
    /// Tool calls an interrupted run left without results: run first, then the model.
    pub pending_calls: Vec<chorus_providers::ToolCall>,
    /// The client runs the tools itself (a gateway request): a generation that ends
    /// with tool calls ends the run, its calls journaled for the client, instead of
    /// being executed by the tool host.
    pub client_tools: bool,
    /// The surface the reply was asked on (a metric label:
    /// [`crate::telemetry::metrics::surface_label`]).
    pub surface: &'static str,
    /// The first attempt's provider call, already sent while the run was admitted.
    pub early: Option<EarlyStream>,
    /// Its readers take the run's end from the journal alone (a gateway response, which
    /// reads nothing back from the store): `finished` may go out before the end's
    /// write commits, once it is queued where the store orders writes (`finish.rs`).
    pub finish_first: bool,
}

/// A run executing on this instance: how to stop it and what it has produced.
pub(crate) struct LocalRun {
    pub stop: CancellationToken,
    pub progress: checkpoint::SharedProgress,
    /// Whose run it is: a reader of a local run is checked against it without a
    /// store read ([`Engine::runs_here_for`]).
    pub account: chorus_model::ids::AccountId,
}

/// Removes a run from the local runs when its task ends, however it ends.
struct LocalGuard<'a> {
    inner: &'a EngineInner,
    run_id: &'a RunId,
}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.run_id);
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub store: Store,
    pub journal: Arc<dyn Journal>,
    pub providers: Arc<ProviderRegistry>,
    pub tools: Arc<ToolHost>,
    pub settings: EngineSettings,
    /// The runs this instance executes.
    pub local: Mutex<HashMap<RunId, LocalRun>>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Engine {
    pub fn new(
        store: Store,
        journal: Arc<dyn Journal>,
        providers: Arc<ProviderRegistry>,
        tools: Arc<ToolHost>,
        settings: EngineSettings,
    ) -> Self {
        Self {
            inner: Arc::new(EngineInner {
                store,
                journal,
                providers,
                tools,
                settings,
                local: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Starts the background tasks of a serving instance: the checkpointer that saves
    /// every local run's text in batches, and the sweeper that marks runs of dead
    /// instances interrupted (first recovering the runs this instance owned before a
    /// restart).
    pub fn start_background(&self) {
        self.inner
            .tasks
            .spawn(checkpoint::checkpoint_forever(self.inner.clone()));
        self.inner
            .tasks
            .spawn(sweeper::sweep_forever(self.inner.clone()));
    }

    /// Runs a housekeeping task of the serving instance on the engine's tracker; it
    /// gets the engine's shutdown token and must end when that is cancelled.
    pub(crate) fn spawn_housekeeping<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task(self.inner.shutdown.clone()));
    }

    /// Spawns the task that executes a run whose row exists and is leased to us.
    pub(crate) fn spawn(&self, job: RunJob) {
        let stop = CancellationToken::new();
        let progress = Arc::new(Mutex::new(checkpoint::Progress::new()));
        self.inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                job.run_id.clone(),
                LocalRun {
                    stop: stop.clone(),
                    progress: progress.clone(),
                    account: job.tool_context.account_id.clone(),
                },
            );
        // Counted as started (and streaming) with the first model of its chain.
        let first_model = self
            .inner
            .providers
            .resolve_chain(&job.model_ref)
            .ok()
            .and_then(|chain| chain.first().map(|t| t.model_ref.clone()))
            .unwrap_or_else(|| job.model_ref.clone());
        let meter = crate::telemetry::metrics::ReplyMeter::start(job.surface, &first_model);
        // A child of the span that asked for the run (the surface's reply), though it
        // outlives it: the run belongs to the server, not to the request.
        let span = tracing::info_span!(
            "chorus.run",
            run_id = %job.run_id,
            surface = job.surface,
            gen_ai.request.model = %job.model_ref,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            chorus.credits_charged_micros = Empty,
            chorus.status = Empty,
            chorus.finish_reason = Empty,
            chorus.tool_rounds = Empty,
            chorus.fallbacks = Empty,
            otel.status_code = Empty,
            gen_ai.prompt = Empty,
            gen_ai.completion = Empty,
        );
        if self.inner.settings.include_content
            && let Some(question) = job
                .request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == chorus_providers::ChatRole::User)
        {
            span.record("gen_ai.prompt", question.content.as_str());
        }
        let inner = self.inner.clone();
        let task = async move {
            let run_id = job.run_id.clone();
            // Every surface bound to the conversation, on any instance, shows the run.
            let started = RunStarted {
                conversation_id: job.tool_context.conversation_id.clone(),
                run_id: run_id.clone(),
            };
            if let Err(e) = inner.journal.announce_run_start(&started).await {
                tracing::warn!(run = %run_id, error = %e, "cannot announce the run's start");
            }
            // Whatever happens to the run (even a panic while it ends), it stops being
            // local, so the checkpointer no longer renews its lease and, if it did not
            // end, the sweeper interrupts it once the lease lapses.
            let _local = LocalGuard {
                inner: &inner,
                run_id: &run_id,
            };
            run::run(&inner, job, stop, progress, meter).await;
        };
        self.inner.tasks.spawn(task.instrument(span));
    }

    /// Whether this instance executes `run` for `account` (then it has not ended, or
    /// is ending: its journal holds its events up to its end).
    pub fn runs_here_for(&self, run: &RunId, account: &chorus_model::ids::AccountId) -> bool {
        self.inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
            .is_some_and(|local| local.account == *account)
    }

    /// Stops a run if this instance executes it. Returns false when it runs elsewhere
    /// (the caller then records the request in the store for the lease holder).
    pub fn stop_local(&self, run: &RunId) -> bool {
        match self
            .inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
        {
            Some(run) => {
                run.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Number of runs executing on this instance.
    pub fn active_local_runs(&self) -> usize {
        self.inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Graceful shutdown: every local run ends as `interrupted` with its text kept
    /// (so it can be continued), then the sweeper stops.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.inner.tasks.len(),
                "engine: runs did not end within the grace period"
            );
        }
    }
}
