//! One generation of a run: one model call, over the model's fallback chain.
//!
//! Each attempt opens a stream on one target and hands it to `stream.rs`. A failure
//! that may pass (and only before anything streamed, since a reader has seen what
//! did) is retried with jittered backoff or the provider's `Retry-After`, then handed
//! to the next model of the chain with a `fallback` event; any other failure ends the
//! generation. Every attempt's outcome and time to first token go to the provider's
//! health record.

use super::state::{Halt, RunState, add_usage};
use super::stream::{PumpEnd, StreamState, first_token_timeout, pump};
use crate::journal::RunEvent;
use crate::telemetry::metrics;
use chorus_providers::{ProviderError, ProviderErrorKind, Target, ToolCall};
use std::time::{Duration, Instant};
use tracing::Instrument;
use tracing::field::Empty;

/// How a generation ended.
pub(super) enum Generated {
    /// The model's stream ended, with the tool calls it made (none: the answer is done).
    Ended {
        finish_reason: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    Halted(Halt),
    /// No target could stream, or the one that did failed: the run's error.
    Failed(String),
}

/// Streams one generation of `run.request` into the journal and the run's progress,
/// and adds its usage to the run's.
pub(super) async fn generate(run: &mut RunState<'_>) -> Generated {
    let chain = match run.inner.providers.resolve_chain(&run.job.model_ref) {
        Ok(chain) => chain,
        Err(e) => return Generated::Failed(e.to_string()),
    };
    let mut out = StreamState::default();
    let span = tracing::info_span!("chorus.generation", chorus.step = run.rounds);
    let end = walk_chain(run, &chain, &mut out).instrument(span).await;
    run.usage = add_usage(run.usage, out.usage);
    match end {
        ChainEnd::Done => Generated::Ended {
            finish_reason: out.finish_reason,
            tool_calls: out.tool_calls,
        },
        ChainEnd::Halted(halt) => Generated::Halted(halt),
        ChainEnd::Failed(error) => Generated::Failed(error),
    }
}

enum ChainEnd {
    Done,
    Halted(Halt),
    Failed(String),
}

/// Attempts the chain's targets in order, each up to its `max_retries` retries.
async fn walk_chain(run: &mut RunState<'_>, chain: &[Target], out: &mut StreamState) -> ChainEnd {
    let mut index = 0;
    let mut attempt = 0u32;
    while let Some(target) = chain.get(index) {
        let span = tracing::info_span!(
            "chorus.provider.attempt",
            gen_ai.system = %target.provider_id,
            gen_ai.request.model = %target.model,
            chorus.model_ref = %target.model_ref,
            chorus.attempt = attempt,
            chorus.outcome = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        let result = attempt_once(run, target, out)
            .instrument(span.clone())
            .await;
        let error = match result {
            Attempt::Done => {
                span.record("chorus.outcome", "ok");
                return ChainEnd::Done;
            }
            Attempt::Halted(halt) => {
                span.record("chorus.outcome", "halted");
                return ChainEnd::Halted(halt);
            }
            Attempt::Failed(error) => {
                span.record("chorus.outcome", "error");
                span.record("error.type", error.kind.as_str());
                span.record("otel.status_code", "ERROR");
                metrics::provider_error(&target.provider_id, error.kind.as_str());
                error
            }
        };
        // Only failures that may pass, before anything streamed, are retried or
        // handed to the next model; the rest end the run.
        if out.produced || !error.is_retryable() {
            tracing::warn!(run = %run.job.run_id, model = %target.model_ref, error = %error, "generation failed");
            return ChainEnd::Failed(describe_failure(&error, &target.provider_id));
        }
        if attempt < target.max_retries
            && let Some(wait) = retry_wait(attempt, error.retry_after, target.max_retry_wait)
        {
            tracing::info!(run = %run.job.run_id, model = %target.model_ref, attempt, ?wait, error = %error, "retrying");
            metrics::provider_retry(&target.provider_id);
            if let Some(halt) = wait_unless_halted(run, wait).await {
                return ChainEnd::Halted(halt);
            }
            attempt += 1;
            continue;
        }
        let Some(next) = chain.get(index + 1) else {
            tracing::warn!(run = %run.job.run_id, model = %target.model_ref, error = %error, "generation failed");
            return ChainEnd::Failed(without_urls(&error.to_string()));
        };
        tracing::warn!(run = %run.job.run_id, from = %target.model_ref, to = %next.model_ref, error = %error, "falling back");
        metrics::fallback(&target.model_ref, &next.model_ref);
        run.fallbacks += 1;
        run.append(RunEvent::Fallback {
            from: target.model_ref.clone(),
            to: next.model_ref.clone(),
            reason: without_urls(&error.to_string()),
        })
        .await;
        index += 1;
        attempt = 0;
    }
    ChainEnd::Done
}

enum Attempt {
    Done,
    Halted(Halt),
    Failed(ProviderError),
}

/// One attempt on one target: open its stream (within the first-token deadline) and
/// pump it, recording the outcome in the provider's health.
async fn attempt_once(run: &mut RunState<'_>, target: &Target, out: &mut StreamState) -> Attempt {
    let mut request = run.request.clone();
    request.model = target.model.clone();
    // A whole reply arrives at once, when complete: its deadline is the whole reply's.
    let whole = request.whole_reply && target.provider.answers_whole();
    run.meter.attempt();
    // The run's first attempt may have been sent while the run was admitted: it
    // started then.
    let early = run.early.take().filter(|early| early.is_for(target));
    let attempt_started = early.as_ref().map_or_else(Instant::now, |e| e.started());
    let first_token_deadline = tokio::time::Instant::from_std(attempt_started)
        + if whole {
            target.whole_reply_timeout
        } else {
            target.first_token_timeout
        };
    let (stop, inner) = (run.stop, run.inner);
    let opening = async {
        match early {
            Some(early) => early.stream().await,
            None => target.provider.stream(request.clone()).await,
        }
    };
    let started = tokio::select! {
        r = tokio::time::timeout_at(first_token_deadline, opening) => {
            r.unwrap_or_else(|_| Err(first_token_timeout()))
        }
        _ = stop.cancelled() => return Attempt::Halted(Halt::Stop),
        _ = inner.shutdown.cancelled() => return Attempt::Halted(Halt::Shutdown),
    };
    let health = inner.providers.health();
    let error = match started {
        Ok(mut stream) => {
            run.streamed_with = Some((target.kind, request));
            run.charged_model = target.model_ref.clone();
            let end = pump(run, &mut stream, out, first_token_deadline).await;
            // A whole reply's wait is its generation's, not a time to first token.
            let first_token = out
                .first_output_at
                .filter(|t| !whole && *t >= attempt_started)
                .map(|t| t - attempt_started);
            match end {
                PumpEnd::Done => {
                    health.record_ok(&target.provider_id, first_token);
                    return Attempt::Done;
                }
                PumpEnd::Halted(halt) => {
                    if first_token.is_some() {
                        health.record_ok(&target.provider_id, first_token);
                    }
                    return Attempt::Halted(halt);
                }
                PumpEnd::Failed(e) => e,
            }
        }
        Err(e) => e,
    };
    health.record_failure(&target.provider_id, &error);
    Attempt::Failed(error)
}

/// Sleeps before a retry; a stop or shutdown cuts the wait short.
async fn wait_unless_halted(run: &RunState<'_>, wait: Duration) -> Option<Halt> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => None,
        _ = run.stop.cancelled() => Some(Halt::Stop),
        _ = run.inner.shutdown.cancelled() => Some(Halt::Shutdown),
    }
}

/// The failure as the run records it; a credentials problem names the provider and the
/// setting to fix, since that is where an operator has to look.
fn describe_failure(error: &ProviderError, provider_id: &str) -> String {
    let auth = error.kind == ProviderErrorKind::Auth;
    let error = without_urls(&error.to_string());
    if auth {
        format!(
            "provider `{provider_id}` rejected its credentials ({error}); check the provider's \
             `api_key` (and `headers`) in the config"
        )
    } else {
        error
    }
}

/// `text` with every URL (`scheme://...` up to a space, quote or closing bracket)
/// replaced by `<url>`: run errors are shown to users, and a provider's address
/// (`base_url`, an internal host) is the operator's business. The log keeps the whole
/// error.
pub(crate) fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-`, `.` right before `://`.
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | '>' | '"' | '\'' | ','))
            .unwrap_or(after.len());
        if scheme_start == at {
            // No scheme: not a URL; keep the `://` and go on.
            out.push_str(&rest[..at + 3]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..scheme_start]);
        out.push_str("<url>");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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
    use super::{retry_wait, without_urls};
    use std::time::Duration;

    #[test]
    fn urls_are_hidden_from_run_errors() {
        assert_eq!(
            without_urls(
                "request failed: error sending request for url (http://10.0.0.5:8000/v1/chat/completions)"
            ),
            "request failed: error sending request for url (<url>)"
        );
        assert_eq!(
            without_urls("see https://internal.example/x?a=1, then 'wss://h:1/p' and a://b"),
            "see <url>, then '<url>' and <url>"
        );
        assert_eq!(
            without_urls("HTTP 500: upstream said no"),
            "HTTP 500: upstream said no"
        );
        assert_eq!(without_urls("odd :// text"), "odd :// text");
    }

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
