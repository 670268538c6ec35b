//! The end of a run: its status from how it ended, a usage estimate when no provider
//! reported any, and the one write that ends it — status, text appended to the message
//! and the charge in one transaction, then `finished` in the journal. A run whose
//! readers take its end from the journal alone (`RunJob::finish_first`: a gateway
//! response) announces `finished` once the write is queued, where the store applies
//! writes in order.
//!
//! Ending is a compare-and-set on the run's status and lease, so a run ends once: a run
//! whose lease was lost, or that another instance already ended, writes nothing.

use super::state::{Halt, RunState};
use crate::journal::RunEvent;
use crate::quota::TokenCounts;
use chorus_providers::estimate_usage;
use chorus_store::{RunOutcome, RunStatus, StoreError};
use futures::future::BoxFuture;
use tracing::Instrument;

/// How a run's steps ended.
pub(super) enum Ending {
    Halted(Halt),
    /// A provider failure (the error the run records).
    Failed(String),
    /// The run's task panicked (logged with the panic's message; users see only that
    /// it failed): final, since continuing would most likely panic again.
    Panicked,
    /// The model finished: its finish reason (`max_tool_steps` when the tool rounds ran
    /// out), `None` when its stream ended without one.
    Complete(Option<String>),
}

/// The error a run whose task panicked records (the panic itself goes to the log only).
const PANICKED: &str = "internal error: the reply failed on the server (see the server log)";

/// Writes the run's end, once.
pub(super) async fn finish(run: &mut RunState<'_>, ending: Ending) {
    let span = tracing::info_span!("chorus.run.finish");
    write_end(run, ending).instrument(span).await
}

async fn write_end(run: &mut RunState<'_>, ending: Ending) {
    // The last streamed append's answer first: it may leave the run degraded.
    run.settle().await;
    let (text, lease_lost) = {
        let mut p = run.progress();
        (std::mem::take(&mut p.text), p.lease_lost)
    };
    if lease_lost {
        // Another instance declared this run dead and ended it; it is theirs now.
        return;
    }
    let (status, reason) = status_of(&ending, &text);
    let failure = match ending {
        Ending::Failed(error) => Some(error),
        Ending::Panicked => Some(PANICKED.to_string()),
        Ending::Halted(_) | Ending::Complete(_) => None,
    };
    if let Some(err) = &failure {
        tracing::warn!(run = %run.job.run_id, error = %err, status = status.as_str(), "run ended with an error");
    }
    if run.degraded {
        run.append(RunEvent::Snapshot { text: text.clone() }).await;
    }
    if run.usage.is_none() && !text.is_empty() {
        estimate(run, &text).await;
    }
    if !run.steps.is_empty() {
        run.save_steps().await;
    }
    let content = run.inner.settings.include_content.then(|| text.clone());
    let finished = RunEvent::Finished {
        status: status.as_str().to_string(),
        reason: reason.clone(),
        error: failure.clone(),
    };
    let (write, amount) = queue_outcome(run, status, text, &reason, &failure);
    // A reader that takes the end from the journal alone (a gateway response) need
    // not wait for the write where writes are ordered: the next admission of the
    // account is queued behind this end, so it sees the run ended and charged.
    let announced = run.job.finish_first && run.inner.store.orders_writes();
    if announced {
        run.append(finished.clone()).await;
    }
    let Some(charged) = saved(run, write.await, amount, announced) else {
        return;
    };
    record_end(run, status, &reason, charged, content);
    if !announced {
        run.append(finished).await;
    }
    tracing::info!(run = %run.job.run_id, status = status.as_str(), "run ended");
}

/// The run's status and finish reason. A failure after text keeps the text as
/// `interrupted`, so it can be continued; a stream that ended without a finish reason
/// was cut off.
fn status_of(ending: &Ending, text: &str) -> (RunStatus, String) {
    match ending {
        Ending::Halted(Halt::Stop) => (RunStatus::Stopped, "stopped".to_string()),
        Ending::Halted(Halt::Shutdown) => (RunStatus::Interrupted, "shutdown".to_string()),
        Ending::Failed(_) if !text.is_empty() => {
            (RunStatus::Interrupted, "provider_error".to_string())
        }
        Ending::Failed(_) => (RunStatus::Failed, "provider_error".to_string()),
        Ending::Panicked => (RunStatus::Failed, "internal_error".to_string()),
        Ending::Complete(Some(r)) => (RunStatus::Complete, r.clone()),
        Ending::Complete(None) => (RunStatus::Interrupted, "stream_ended".to_string()),
    }
}

/// The provider reported no usage: count it with the tokenizer of the model that
/// streamed last, off the async workers (long prompts take milliseconds to encode), and
/// journal it as `estimated`.
async fn estimate(run: &mut RunState<'_>, text: &str) {
    let Some((kind, request)) = run.streamed_with.take() else {
        return;
    };
    let reply = text.to_string();
    let estimate =
        tokio::task::spawn_blocking(move || estimate_usage(kind, &request, &reply)).await;
    if let Ok(u) = estimate {
        run.usage = Some(u);
        run.append(RunEvent::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: 0,
            reasoning_tokens: 0,
            estimated: true,
        })
        .await;
    }
}

/// The run's end in its metrics and on its span: status, the model that answered,
/// usage and charge (and the reply's text only when `telemetry.include_content`).
fn record_end(
    run: &RunState<'_>,
    status: RunStatus,
    reason: &str,
    charged: i64,
    content: Option<String>,
) {
    let tokens = run.usage.map(|u| (u.prompt_tokens, u.completion_tokens));
    run.meter
        .ended(status.as_str(), &run.charged_model, tokens, charged);
    let span = &run.span;
    span.record("chorus.status", status.as_str());
    span.record("chorus.finish_reason", reason);
    span.record("gen_ai.response.model", run.charged_model.as_str());
    if let Some((prompt, completion)) = tokens {
        span.record("gen_ai.usage.input_tokens", prompt);
        span.record("gen_ai.usage.output_tokens", completion);
    }
    span.record("chorus.credits_charged_micros", charged);
    span.record("chorus.tool_rounds", run.rounds);
    span.record("chorus.fallbacks", run.fallbacks);
    if status == RunStatus::Failed {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(text) = content {
        span.record("gen_ai.completion", text.as_str());
    }
}

/// Queues the transaction that ends the run (status, text and charge), with the
/// micro-credits it charges; the write is ordered behind every write queued before
/// it, where the store orders writes.
fn queue_outcome(
    run: &RunState<'_>,
    status: RunStatus,
    text: String,
    reason: &str,
    failure: &Option<String>,
) -> (BoxFuture<'static, Result<bool, StoreError>>, i64) {
    let usage = run.usage;
    let outcome = RunOutcome {
        status,
        text,
        seq: run.seq as i64 + 1,
        finish_reason: Some(reason.to_string()),
        error: failure.clone(),
        prompt_tokens: usage.map(|u| u.prompt_tokens as i64),
        completion_tokens: usage.map(|u| u.completion_tokens as i64),
        cached_prompt_tokens: usage.map(|u| u.cached_prompt_tokens as i64),
        reasoning_tokens: usage.map(|u| u.reasoning_tokens as i64),
    };
    let charge = usage.map(|u| {
        run.inner.settings.prices.charge(
            &run.charged_model,
            TokenCounts {
                prompt: u.prompt_tokens as i64,
                completion: u.completion_tokens as i64,
                cached_prompt: u.cached_prompt_tokens as i64,
            },
        )
    });
    let amount = charge.as_ref().map_or(0, |c| c.amount);
    let owner = &run.inner.settings.owner;
    let write = run
        .inner
        .store
        .finish_run_queued(&run.job.run_id, owner, outcome, charge);
    (write, amount)
}

/// The micro-credits charged when the end was written; `None` when the run is not
/// ours to end (already ended elsewhere) or the write failed: then a run that has not
/// announced its end must not announce one of its own (`announced`: it did, so the
/// log says its readers saw an end the store does not hold yet).
fn saved(
    run: &RunState<'_>,
    written: Result<bool, StoreError>,
    amount: i64,
    announced: bool,
) -> Option<i64> {
    match written {
        Ok(true) => Some(amount),
        Ok(false) => {
            tracing::warn!(run = %run.job.run_id, announced, "run was already ended elsewhere");
            None
        }
        Err(e) => {
            // The lease will lapse and the sweeper will interrupt the run with its checkpoint.
            tracing::error!(run = %run.job.run_id, error = %e, announced, "could not save the end of the run");
            None
        }
    }
}
