//! One run, from the provider's stream to the journal and the store.
//!
//! Hot path: each provider event becomes one journal append and, for text, an append
//! to the run's in-memory progress. The task never waits on the database while it
//! streams: the checkpointer saves progress in batches; the task writes once, at the end.

use super::checkpoint::SharedProgress;
use super::tool_loop::{StepEnd, ToolTurn};
use super::{EngineInner, RunJob};
use crate::journal::{JournalEntry, RunEvent};
use crate::quota::TokenCounts;
use chorus_providers::{
    ChatRequest, ProviderError, ProviderEvent, ProviderStream, Usage, estimate_usage,
};
use chorus_store::{RunOutcome, RunStatus};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The run's journal writer: assigns seqs and survives a journal outage by replacing
/// the lost events with a snapshot at the end.
pub(super) struct Writer<'a> {
    inner: &'a EngineInner,
    pub(super) job: &'a RunJob,
    pub(super) seq: u64,
    degraded: bool,
}

impl Writer<'_> {
    pub(super) async fn append(&mut self, event: RunEvent) {
        let entry = JournalEntry {
            seq: self.seq + 1,
            event,
        };
        for attempt in 0..3u32 {
            match self
                .inner
                .journal
                .append(&self.job.run_id, entry.clone())
                .await
            {
                Ok(()) => {
                    self.seq += 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(run = %self.job.run_id, error = %e, attempt, "journal append failed");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        self.degraded = true;
    }
}

pub(super) async fn execute(
    inner: Arc<EngineInner>,
    job: RunJob,
    stop: CancellationToken,
    progress: SharedProgress,
) {
    let owner = inner.settings.owner.clone();
    let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = Writer {
        inner: &inner,
        job: &job,
        seq: 0,
        degraded: false,
    };
    w.append(RunEvent::Started {
        message_id: job.message_id.clone(),
        model: job.model_ref.clone(),
        prefix: job.prefix.clone(),
    })
    .await;
    lock().seq = w.seq;

    let mut turn = ToolTurn::new(&job);
    let mut usage: Option<Usage> = None;
    let mut finish_reason: Option<String> = None;
    // The provider kind and request of the attempt that streamed, for a usage estimate.
    let mut streamed_with: Option<(crate::config::ProviderKind, ChatRequest)> = None;
    // The model that streamed (an alias's fallback may differ from the one asked for):
    // what the run is charged at.
    let mut charged_model = job.model_ref.clone();
    let mut failure: Option<String> = None;
    let mut stopped_by: Option<&'static str> = None;
    // Calls that an interrupted run left without results run first.
    if !job.pending_calls.is_empty() {
        let calls = job.pending_calls.clone();
        if let StepEnd::Stopped(by) = turn.run_calls(&inner, &mut w, &stop, calls, true).await {
            stopped_by = Some(by);
        }
    }
    // The tool loop: generate; while the model asks for tools, run them and generate again.
    while stopped_by.is_none() {
        let g = generate(&inner, &job, &turn.request, &mut w, &progress, &stop).await;
        usage = add_usage(usage, g.state.usage);
        if g.streamed_with.is_some() {
            streamed_with = g.streamed_with;
        }
        if let Some(model) = g.charged_model {
            charged_model = model;
        }
        failure = g.failure;
        stopped_by = g.stopped_by;
        finish_reason = g.state.finish_reason;
        if failure.is_some() || stopped_by.is_some() || g.state.tool_calls.is_empty() {
            break;
        }
        match turn
            .run_step(&inner, &mut w, &progress, &stop, g.state.tool_calls)
            .await
        {
            StepEnd::Continue => {}
            StepEnd::MaxSteps => {
                finish_reason = Some("max_tool_steps".into());
                break;
            }
            StepEnd::Stopped(by) => stopped_by = Some(by),
        }
    }

    let (text, lease_lost) = {
        let mut p = lock();
        (std::mem::take(&mut p.text), p.lease_lost)
    };
    if lease_lost {
        // Another instance declared this run dead and ended it; it is theirs now.
        return;
    }
    let (status, reason) = match (stopped_by, &failure, &finish_reason) {
        (Some("stopped"), _, _) => (RunStatus::Stopped, "stopped".to_string()),
        (Some(_), _, _) => (RunStatus::Interrupted, "shutdown".to_string()),
        // A failure after text keeps the text and can be continued.
        (None, Some(_), _) if !text.is_empty() => {
            (RunStatus::Interrupted, "provider_error".to_string())
        }
        (None, Some(_), _) => (RunStatus::Failed, "provider_error".to_string()),
        (None, None, Some(r)) => (RunStatus::Complete, r.clone()),
        (None, None, None) => (RunStatus::Interrupted, "stream_ended".to_string()),
    };
    if let Some(err) = &failure {
        tracing::warn!(run = %job.run_id, error = %err, status = status.as_str(), "run ended with a provider error");
    }
    if usage.is_none()
        && !text.is_empty()
        && let Some((kind, request)) = streamed_with
    {
        // The provider reported nothing: count with the model's tokenizer, off the
        // async workers (long prompts take milliseconds to encode).
        let reply = text.clone();
        let estimate =
            tokio::task::spawn_blocking(move || estimate_usage(kind, &request, &reply)).await;
        if let Ok(u) = estimate {
            usage = Some(u);
            w.append(RunEvent::Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_prompt_tokens: 0,
                reasoning_tokens: 0,
                estimated: true,
            })
            .await;
        }
    }
    if w.degraded {
        w.append(RunEvent::Snapshot { text: text.clone() }).await;
    }
    if !turn.steps().is_empty() {
        turn.save(&inner, &w).await;
    }
    let outcome = RunOutcome {
        status,
        text,
        seq: w.seq as i64 + 1,
        finish_reason: Some(reason.clone()),
        error: failure.clone(),
        prompt_tokens: usage.map(|u| u.prompt_tokens as i64),
        completion_tokens: usage.map(|u| u.completion_tokens as i64),
        cached_prompt_tokens: usage.map(|u| u.cached_prompt_tokens as i64),
        reasoning_tokens: usage.map(|u| u.reasoning_tokens as i64),
    };
    let charge = usage.map(|u| {
        inner.settings.prices.charge(
            &charged_model,
            TokenCounts {
                prompt: u.prompt_tokens as i64,
                completion: u.completion_tokens as i64,
                cached_prompt: u.cached_prompt_tokens as i64,
            },
        )
    });
    match inner
        .store
        .finish_run_charged(&job.run_id, &owner, &outcome, charge.as_ref())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run = %job.run_id, "run was already ended elsewhere");
            return;
        }
        Err(e) => {
            // The lease will lapse and the sweeper will interrupt the run with its checkpoint.
            tracing::error!(run = %job.run_id, error = %e, "could not save the end of the run");
            return;
        }
    }
    w.append(RunEvent::Finished {
        status: status.as_str().to_string(),
        reason,
        error: failure,
    })
    .await;
    tracing::info!(run = %job.run_id, status = status.as_str(), "run ended");
}

/// What one generation (one model call, over the fallback chain) ended with.
struct Generation {
    state: StreamState,
    /// The model that streamed (an alias's fallback may differ from the one asked
    /// for): what the run is charged at.
    charged_model: Option<String>,
    streamed_with: Option<(crate::config::ProviderKind, ChatRequest)>,
    failure: Option<String>,
    stopped_by: Option<&'static str>,
}

/// One model call: walks the model's fallback chain with retries, streaming into the
/// journal and the run's progress.
async fn generate(
    inner: &Arc<EngineInner>,
    job: &RunJob,
    base: &ChatRequest,
    w: &mut Writer<'_>,
    progress: &SharedProgress,
    stop: &CancellationToken,
) -> Generation {
    let mut state = StreamState::default();
    let mut streamed_with: Option<(crate::config::ProviderKind, ChatRequest)> = None;
    let mut charged_model: Option<String> = None;
    let mut failure: Option<String> = None;
    let mut stopped_by: Option<&'static str> = None;
    match inner.providers.resolve_chain(&job.model_ref) {
        Err(e) => failure = Some(e.to_string()),
        Ok(chain) => {
            let mut index = 0;
            let mut attempt = 0u32;
            'attempts: while let Some(target) = chain.get(index) {
                let mut request = base.clone();
                request.model = target.model.clone();
                let attempt_started = Instant::now();
                let first_token_deadline =
                    tokio::time::Instant::from_std(attempt_started) + target.first_token_timeout;
                let started = tokio::select! {
                    r = tokio::time::timeout_at(first_token_deadline, target.provider.stream(request.clone())) => {
                        r.unwrap_or_else(|_| Err(first_token_timeout()))
                    }
                    _ = stop.cancelled() => { stopped_by = Some("stopped"); break 'attempts; }
                    _ = inner.shutdown.cancelled() => { stopped_by = Some("shutdown"); break 'attempts; }
                };
                let health = inner.providers.health();
                let error = match started {
                    Ok(mut stream) => {
                        streamed_with = Some((target.kind, request));
                        charged_model = Some(target.model_ref.clone());
                        let end = pump(
                            &mut stream,
                            w,
                            progress,
                            &mut state,
                            (stop, &inner.shutdown),
                            first_token_deadline,
                        )
                        .await;
                        let first_token = state
                            .first_output_at
                            .filter(|t| *t >= attempt_started)
                            .map(|t| t - attempt_started);
                        match end {
                            PumpEnd::Done => {
                                health.record_ok(&target.provider_id, first_token);
                                break 'attempts;
                            }
                            PumpEnd::Stopped(by) => {
                                if first_token.is_some() {
                                    health.record_ok(&target.provider_id, first_token);
                                }
                                stopped_by = Some(by);
                                break 'attempts;
                            }
                            PumpEnd::Failed(e) => e,
                        }
                    }
                    Err(e) => e,
                };
                health.record_failure(&target.provider_id, &error);
                // Only failures that may pass, before anything streamed, are retried or
                // handed to the next model; the rest end the run.
                if state.produced || !error.is_retryable() {
                    failure = Some(describe_failure(&error, &target.provider_id));
                    break;
                }
                if attempt < target.max_retries
                    && let Some(wait) =
                        retry_wait(attempt, error.retry_after, target.max_retry_wait)
                {
                    tracing::info!(run = %job.run_id, model = %target.model_ref, attempt, ?wait, error = %error, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => { stopped_by = Some("stopped"); break 'attempts; }
                        _ = inner.shutdown.cancelled() => { stopped_by = Some("shutdown"); break 'attempts; }
                    }
                    attempt += 1;
                    continue;
                }
                match chain.get(index + 1) {
                    Some(next) => {
                        tracing::warn!(run = %job.run_id, from = %target.model_ref, to = %next.model_ref, error = %error, "falling back");
                        w.append(RunEvent::Fallback {
                            from: target.model_ref.clone(),
                            to: next.model_ref.clone(),
                            reason: error.to_string(),
                        })
                        .await;
                        index += 1;
                        attempt = 0;
                    }
                    None => {
                        failure = Some(error.to_string());
                        break;
                    }
                }
            }
        }
    }
    Generation {
        state,
        charged_model,
        streamed_with,
        failure,
        stopped_by,
    }
}

fn add_usage(total: Option<Usage>, more: Option<Usage>) -> Option<Usage> {
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

/// What a run has received from its provider so far.
#[derive(Default)]
struct StreamState {
    usage: Option<Usage>,
    finish_reason: Option<String>,
    /// Whether any text or reasoning has streamed: after that, no retry or fallback.
    produced: bool,
    /// When the first output arrived (for the provider's time-to-first-token).
    first_output_at: Option<Instant>,
    /// The tool calls the model made, in its order.
    tool_calls: Vec<chorus_providers::ToolCall>,
}

impl StreamState {
    fn output_arrived(&mut self) {
        if !self.produced {
            self.produced = true;
            self.first_output_at = Some(Instant::now());
        }
    }
}

enum PumpEnd {
    /// The provider's stream ended.
    Done,
    Stopped(&'static str),
    Failed(ProviderError),
}

/// Moves one provider stream into the journal and the run's progress.
async fn pump(
    stream: &mut ProviderStream,
    w: &mut Writer<'_>,
    progress: &SharedProgress,
    state: &mut StreamState,
    (stop, shutdown): (&CancellationToken, &CancellationToken),
    first_token_deadline: tokio::time::Instant,
) -> PumpEnd {
    let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let waiting_for_first = !state.produced;
        tokio::select! {
            biased;
            _ = stop.cancelled() => return PumpEnd::Stopped("stopped"),
            _ = tokio::time::sleep_until(first_token_deadline), if waiting_for_first => {
                return PumpEnd::Failed(first_token_timeout());
            }
            _ = shutdown.cancelled() => return PumpEnd::Stopped("shutdown"),
            next = stream.next() => match next {
                None => return PumpEnd::Done,
                Some(Ok(ProviderEvent::Text(delta))) => {
                    state.output_arrived();
                    lock().push(&delta);
                    w.append(RunEvent::Delta { text: delta }).await;
                    lock().seq = w.seq;
                }
                Some(Ok(ProviderEvent::Reasoning(r))) => {
                    state.output_arrived();
                    w.append(RunEvent::Reasoning { text: r }).await;
                }
                Some(Ok(ProviderEvent::Usage(u))) => {
                    state.usage = Some(u);
                    w.append(RunEvent::Usage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                        cached_prompt_tokens: u.cached_prompt_tokens,
                        reasoning_tokens: u.reasoning_tokens,
                        estimated: u.estimated,
                    })
                    .await;
                }
                Some(Ok(ProviderEvent::ToolCall(call))) => {
                    state.output_arrived();
                    state.tool_calls.push(call.clone());
                    w.append(RunEvent::ToolCall {
                        id: call.id,
                        name: call.name,
                        arguments: call.arguments,
                    })
                    .await;
                }
                Some(Ok(ProviderEvent::Finished(reason))) => state.finish_reason = Some(reason),
                Some(Err(e)) => return PumpEnd::Failed(e),
            }
        }
    }
}

/// The failure as the run records it; a credentials problem names the provider and the
/// setting to fix, since that is where an operator has to look.
fn describe_failure(error: &ProviderError, provider_id: &str) -> String {
    if error.kind == chorus_providers::ProviderErrorKind::Auth {
        format!(
            "provider `{provider_id}` rejected its credentials ({error}); check the provider's \
             `api_key` (and `headers`) in the config"
        )
    } else {
        error.to_string()
    }
}

fn first_token_timeout() -> ProviderError {
    ProviderError::new(
        chorus_providers::ProviderErrorKind::Timeout,
        "no first token in time (first_token_timeout_secs)",
    )
}

/// How long to wait before retry `attempt` (0-based): the provider's `Retry-After` if it
/// gave one (`None`, meaning do not retry here, when that exceeds `max_wait`), else
/// exponential backoff from 250 ms with full jitter, capped at `max_wait`.
fn retry_wait(attempt: u32, retry_after: Option<Duration>, max_wait: Duration) -> Option<Duration> {
    if let Some(wait) = retry_after {
        return (wait <= max_wait).then_some(wait);
    }
    let ceiling = Duration::from_millis(250u64.saturating_mul(1 << attempt.min(10))).min(max_wait);
    let jitter: f64 = rand::random();
    Some(ceiling.mul_f64(0.5 + jitter / 2.0))
}

#[cfg(test)]
mod tests {
    use super::retry_wait;
    use std::time::Duration;

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let cap = Duration::from_secs(20);
        assert_eq!(
            retry_wait(0, Some(Duration::from_secs(7)), cap),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_wait(0, Some(Duration::from_secs(60)), cap), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let cap = Duration::from_secs(2);
        for attempt in 0..8 {
            let wait = retry_wait(attempt, None, cap).unwrap();
            let ceiling = Duration::from_millis(250 << attempt).min(cap);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
