//! The hot path: one provider stream moved into the journal and the run's progress.
//!
//! Each provider event becomes one journal append and, for text, an append to the
//! in-memory progress. Nothing here waits on the database: the checkpointer saves the
//! progress in batches, so a slow database slows checkpoints, never tokens.

use super::state::{Halt, RunState};
use crate::journal::RunEvent;
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
    loop {
        let waiting_for_first = !out.produced;
        tokio::select! {
            biased;
            _ = stop.cancelled() => return PumpEnd::Halted(Halt::Stop),
            _ = tokio::time::sleep_until(first_token_deadline), if waiting_for_first => {
                return PumpEnd::Failed(first_token_timeout());
            }
            _ = shutdown.cancelled() => return PumpEnd::Halted(Halt::Shutdown),
            next = stream.next() => match next {
                None => return PumpEnd::Done,
                Some(Ok(event)) => take(run, out, event).await,
                Some(Err(e)) => return PumpEnd::Failed(e),
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
            run.progress().push(&delta);
            run.append(RunEvent::Delta { text: delta }).await;
            run.sync_seq();
        }
        ProviderEvent::Reasoning(r) => {
            out.output_arrived();
            run.append(RunEvent::Reasoning { text: r }).await;
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
