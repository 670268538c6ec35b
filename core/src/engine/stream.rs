//! The hot path: one provider stream moved into the journal and the run's progress.
//!
//! Each provider event becomes one journal append and, for text, an append to the
//! in-memory progress; text deltas that arrived together become one
//! ([`coalesce`]). A delta's append is not waited for: its answer is read with the
//! next event's (`RunState::append_streamed`). Nothing here waits on the database:
//! the checkpointer saves the progress in batches, so a slow database slows
//! checkpoints, never tokens.

use super::state::{Halt, RunState};
use crate::journal::RunEvent;
use crate::telemetry::metrics::ReplyMeter;
use chorus_providers::{
    ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream, ToolCall, Usage,
};
use futures::StreamExt;
use std::time::Instant;

/// What one generation has received from its provider so far (over all its attempts:
/// what an attempt streamed decides whether the next may retry).
#[derive(Default)]
pub(super) struct StreamState {
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    /// Whether any text, reasoning or tool call has streamed: after that, no retry or
    /// fallback, since the reader has already seen it.
    pub produced: bool,
    /// When the first output arrived (for the provider's time-to-first-token).
    pub first_output_at: Option<Instant>,
    /// The tool calls the model made, in its order.
    pub tool_calls: Vec<ToolCall>,
}

impl StreamState {
    fn output_arrived(&mut self) {
        if !self.produced {
            self.produced = true;
            self.first_output_at = Some(Instant::now());
        }
    }
}

pub(super) enum PumpEnd {
    /// The provider's stream ended.
    Done,
    Halted(Halt),
    Failed(ProviderError),
}

/// The most text one journal event gathers from deltas that arrived together.
const COALESCE_BYTES: usize = 16 * 1024;

/// Streams until the provider ends, fails, the run is stopped, or no output came
/// before `first_token_deadline`.
pub(super) async fn pump(
    run: &mut RunState<'_>,
    stream: &mut ProviderStream,
    out: &mut StreamState,
    first_token_deadline: tokio::time::Instant,
) -> PumpEnd {
    // Copies of the run's own references, so that the arms can borrow `run` mutably.
    let (stop, inner) = (run.stop, run.inner);
    let shutdown = &inner.shutdown;
    // An item that had already arrived behind deltas it could not join.
    let mut ready = None;
    loop {
        let waiting_for_first = !out.produced;
        let next = match ready.take() {
            Some(Ready::Item(next)) => next,
            // Only now, with the text that arrived before it journaled.
            Some(Ready::Panicked(payload)) => std::panic::resume_unwind(payload),
            None => tokio::select! {
                biased;
                _ = stop.cancelled() => return PumpEnd::Halted(Halt::Stop),
                _ = tokio::time::sleep_until(first_token_deadline), if waiting_for_first => {
                    return PumpEnd::Failed(first_token_timeout());
                }
                _ = shutdown.cancelled() => return PumpEnd::Halted(Halt::Shutdown),
                next = stream.next() => next,
            },
        };
        match next {
            None => return PumpEnd::Done,
            Some(Ok(event)) => {
                let event = coalesce(event, stream, &mut ready, &mut run.meter);
                take(run, out, event).await;
            }
            Some(Err(e)) => return PumpEnd::Failed(e),
        }
    }
}

/// What the provider's stream gave behind deltas it could not join.
enum Ready {
    Item(Option<Result<ProviderEvent, ProviderError>>),
    /// The stream panicked (a bug in a provider): the panic goes on once the text
    /// received before it is journaled, as it would have without the joining.
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Joins to a text (or reasoning) delta the deltas of its kind that have already
/// arrived behind it (read in the same network read, or piled up while this run's
/// task waited for a core), so they cost one journal event, one wake-up per reader
/// and one chunk per client instead of one each. Nothing waits for more: a delta
/// that is alone goes out as it came, and the text is the same either way. The first
/// item that cannot join is kept in `ready`, to be taken next.
fn coalesce(
    mut event: ProviderEvent,
    stream: &mut ProviderStream,
    ready: &mut Option<Ready>,
    meter: &mut ReplyMeter,
) -> ProviderEvent {
    use futures::FutureExt;
    loop {
        let (ProviderEvent::Text(text) | ProviderEvent::Reasoning(text)) = &event else {
            return event;
        };
        if text.len() >= COALESCE_BYTES {
            return event;
        }
        let polled = std::panic::AssertUnwindSafe(stream.next())
            .catch_unwind()
            .now_or_never();
        let next = match polled {
            // Not ready: nothing more has arrived yet.
            None => return event,
            Some(Ok(next)) => next,
            Some(Err(payload)) => {
                *ready = Some(Ready::Panicked(payload));
                return event;
            }
        };
        match (&mut event, next) {
            (ProviderEvent::Text(text), Some(Ok(ProviderEvent::Text(more))))
            | (ProviderEvent::Reasoning(text), Some(Ok(ProviderEvent::Reasoning(more)))) => {
                // Each provider event still counts in the token-interval histogram.
                meter.event();
                text.push_str(&more);
            }
            (_, other) => {
                *ready = Some(Ready::Item(other));
                return event;
            }
        }
    }
}

/// One provider event into the journal (and, for text, the progress).
async fn take(run: &mut RunState<'_>, out: &mut StreamState, event: ProviderEvent) {
    run.meter.event();
    if matches!(
        event,
        ProviderEvent::Text(_) | ProviderEvent::Reasoning(_) | ProviderEvent::ToolCall(_)
    ) {
        // After the first output of the run, a flag check.
        run.meter.first_output(&run.charged_model);
    }
    match event {
        ProviderEvent::Text(delta) => {
            out.output_arrived();
            run.append_streamed(RunEvent::Delta { text: delta }).await;
        }
        ProviderEvent::Reasoning(r) => {
            out.output_arrived();
            run.append_streamed(RunEvent::Reasoning { text: r }).await;
        }
        ProviderEvent::Usage(u) => {
            out.usage = Some(u);
            run.append(RunEvent::Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_prompt_tokens: u.cached_prompt_tokens,
                reasoning_tokens: u.reasoning_tokens,
                estimated: u.estimated,
            })
            .await;
        }
        ProviderEvent::ToolCall(call) => {
            out.output_arrived();
            out.tool_calls.push(call.clone());
            run.append(RunEvent::ToolCall {
                id: call.id,
                name: call.name,
                arguments: call.arguments,
            })
            .await;
        }
        ProviderEvent::Finished(reason) => out.finish_reason = Some(reason),
    }
}

/// The error of an attempt that produced nothing within the target's
/// `first_token_timeout` (retryable, like any timeout).
pub(super) fn first_token_timeout() -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Timeout,
        "no first token in time (first_token_timeout_secs)",
    )
}
