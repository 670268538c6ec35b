//! One run, top to bottom. Admission is already done (the run row exists and is
//! leased to this instance); this module drives what follows:
//!
//! 1. `started` in the journal;
//! 2. the calls an interrupted run left pending, if any (`tool_round.rs`);
//! 3. steps: stream one generation (`step.rs`); if it ended with tool calls, execute
//!    them as one round (`tool_round.rs`) and take the next step, up to
//!    `tools.max_steps` rounds;
//! 4. the one final write (`finish.rs`).
//!
//! The run's state lives in one [`RunState`] that this module owns and lends to each
//! phase; the phases return how they ended and never call back up, so the order of a
//! run is the order of this file.

use super::checkpoint::SharedProgress;
use super::finish::{Ending, finish};
use super::state::RunState;
use super::step::{Generated, generate};
use super::tool_round::{RoundEnd, answer_pending, run_round};
use super::{EngineInner, RunJob};
use crate::journal::RunEvent;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio_util::sync::CancellationToken;

/// Executes a run to its end. `stop` is cancelled to stop it; `progress` is what the
/// checkpointer saves while it streams.
pub(super) async fn run(
    inner: &EngineInner,
    mut job: RunJob,
    stop: CancellationToken,
    progress: SharedProgress,
    meter: crate::telemetry::metrics::ReplyMeter,
) {
    let early = job.early.take();
    let mut run = RunState::new(inner, &job, &stop, progress, meter);
    run.early = early;
    run.append(RunEvent::Started {
        message_id: job.message_id.clone(),
        model: job.model_ref.clone(),
        prefix: job.prefix.clone(),
    })
    .await;
    run.sync_seq();
    // A panic in a phase (a provider's parser, a tool, our own bug) ends this run
    // `failed` with its text kept, charged and `finished` in the journal, instead of
    // leaving it `streaming` while the checkpointer renews its lease forever.
    let ending = match AssertUnwindSafe(steps(&mut run)).catch_unwind().await {
        Ok(ending) => ending,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(run = %job.run_id, panic = %message, "the run's task panicked; ending it as failed");
            Ending::Panicked
        }
    };
    finish(&mut run, ending).await;
}

/// The tool loop: generate; while the model asks for tools, run them and generate
/// again. Calls an interrupted run left pending run first. A run whose client runs its
/// own tools ends at the first tool calls.
async fn steps(run: &mut RunState<'_>) -> Ending {
    if !run.job.pending_calls.is_empty()
        && let Some(halt) = answer_pending(run).await
    {
        return Ending::Halted(halt);
    }
    loop {
        let calls = match generate(run).await {
            Generated::Ended {
                finish_reason,
                tool_calls,
            } if tool_calls.is_empty() => return Ending::Complete(finish_reason),
            // The client executes its own tools: the calls are in the journal for it.
            Generated::Ended { .. } if run.job.client_tools => {
                return Ending::Complete(Some("tool_calls".into()));
            }
            Generated::Ended { tool_calls, .. } => tool_calls,
            Generated::Halted(halt) => return Ending::Halted(halt),
            Generated::Failed(error) => return Ending::Failed(error),
        };
        match run_round(run, calls).await {
            RoundEnd::Continue => {}
            RoundEnd::MaxSteps => return Ending::Complete(Some("max_tool_steps".into())),
            RoundEnd::Halted(halt) => return Ending::Halted(halt),
        }
    }
}
