//! A gateway run's reply, read from its journal like every reader's: the events an
//! API turns into its own chunks (streaming) or one response (collected).
//!
//! A [`Follow`] owns the reader's side of the run. With `[gateway]
//! cancel_on_disconnect`, dropping it before the run ended (the client went away)
//! stops the run; otherwise the run goes on and is charged, and the rest stays
//! readable from `/api/runs/{id}/events`.

use crate::error::{ErrorKind, GatewayError};
use chorus_core::Core;
use chorus_core::GatewayRun;
use chorus_core::journal::{EntryStream, RunEvent};
use chorus_core::telemetry::timing;
use chorus_model::account::Account;
use chorus_model::ids::RunId;
use futures::StreamExt;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Token counts of a reply, as the run journaled them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub reasoning_tokens: u64,
}

/// A tool call the client is to run.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// How the run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyEnd {
    /// The run's final status (`complete`, `stopped`, `interrupted`, `failed`).
    pub status: String,
    /// Why: the model's finish reason (`stop`, `length`, `tool_calls`, ...) or Chorus's.
    pub reason: String,
    pub error: Option<String>,
}

impl ReplyEnd {
    /// The error a client gets for a run that did not complete, if it did not.
    pub fn failure(&self, run: &RunId) -> Option<GatewayError> {
        match self.status.as_str() {
            "complete" | "stopped" => None,
            _ => Some(GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "the reply did not complete ({}: {}); run {run} keeps what was generated",
                    self.reason,
                    self.error.as_deref().unwrap_or("no detail")
                ),
            )),
        }
    }
}

/// One thing a reply adds, in the order the run produced it.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyEvent {
    Text(String),
    Reasoning(String),
    ToolCall(ReplyToolCall),
    Usage(ReplyUsage),
    End(ReplyEnd),
}

/// A whole reply, for non-streaming responses.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ReplyToolCall>,
    pub usage: ReplyUsage,
    pub end: Option<ReplyEnd>,
}

/// The reader of one gateway run.
pub struct Follow {
    entries: EntryStream,
    shutdown: CancellationToken,
    guard: StopOnDrop,
    /// Counts this reader in `chorus_sse_readers{surface="gateway"}` while it lives.
    _reader: chorus_core::telemetry::StreamReaderGuard,
    /// While timing is on, when following began, until the first event is logged.
    timed_since: Option<Instant>,
}

impl Follow {
    /// Follows `run`, just started, from its start.
    pub fn start(
        core: &Core,
        account: &Account,
        run: &GatewayRun,
        cancel_on_disconnect: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let entries = core.follow_gateway_run(run);
        let run = run.run_id.clone();
        Self {
            timed_since: timing::on().then(Instant::now),
            entries,
            shutdown,
            _reader: chorus_core::telemetry::StreamReaderGuard::open("gateway"),
            guard: StopOnDrop {
                armed: cancel_on_disconnect,
                core: core.clone(),
                account: account.clone(),
                run,
            },
        }
    }

    /// The next event of the reply; `None` after its end (or when the server shuts
    /// down, or the journal fails: then an `End` saying so comes first).
    pub async fn next(&mut self) -> Option<ReplyEvent> {
        loop {
            let item = tokio::select! {
                item = self.entries.next() => item,
                _ = self.shutdown.cancelled() => {
                    self.guard.armed = false;
                    return None;
                }
            };
            let entry = match item {
                None => {
                    self.guard.armed = false;
                    return None;
                }
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    tracing::warn!(run = %self.guard.run, error = %e, "gateway: the run's journal failed");
                    self.guard.armed = false;
                    return Some(ReplyEvent::End(ReplyEnd {
                        status: "interrupted".into(),
                        reason: "journal_unavailable".into(),
                        error: Some(format!(
                            "the run's journal is unavailable; read the rest from /api/runs/{}/events",
                            self.guard.run
                        )),
                    }));
                }
            };
            if let Some(event) = reply_event(entry.event) {
                if let Some(since) = self.timed_since.take() {
                    timing::log_step(
                        "gateway_first_event",
                        &[("wait", since.elapsed().as_micros())],
                    );
                }
                if matches!(event, ReplyEvent::End(_)) {
                    self.guard.armed = false;
                }
                return Some(event);
            }
        }
    }

    /// Reads the whole reply.
    pub async fn collect(mut self) -> Reply {
        let mut reply = Reply::default();
        while let Some(event) = self.next().await {
            match event {
                ReplyEvent::Text(t) => reply.text.push_str(&t),
                ReplyEvent::Reasoning(t) => reply.reasoning.push_str(&t),
                ReplyEvent::ToolCall(call) => reply.tool_calls.push(call),
                ReplyEvent::Usage(u) => reply.usage = add(reply.usage, u),
                ReplyEvent::End(end) => {
                    reply.end = Some(end);
                    break;
                }
            }
        }
        reply
    }
}

/// Sums usage (a run journals one per generation).
pub fn add(a: ReplyUsage, b: ReplyUsage) -> ReplyUsage {
    ReplyUsage {
        prompt_tokens: a.prompt_tokens + b.prompt_tokens,
        completion_tokens: a.completion_tokens + b.completion_tokens,
        cached_prompt_tokens: a.cached_prompt_tokens + b.cached_prompt_tokens,
        reasoning_tokens: a.reasoning_tokens + b.reasoning_tokens,
    }
}

/// What a journal event adds to a reply (nothing for bookkeeping events).
fn reply_event(event: RunEvent) -> Option<ReplyEvent> {
    Some(match event {
        RunEvent::Delta { text } => ReplyEvent::Text(text),
        RunEvent::Reasoning { text } => ReplyEvent::Reasoning(text),
        RunEvent::ToolCall {
            id,
            name,
            arguments,
        } => ReplyEvent::ToolCall(ReplyToolCall {
            id,
            name,
            arguments,
        }),
        RunEvent::Usage {
            prompt_tokens,
            completion_tokens,
            cached_prompt_tokens,
            reasoning_tokens,
            ..
        } => ReplyEvent::Usage(ReplyUsage {
            prompt_tokens,
            completion_tokens,
            cached_prompt_tokens,
            reasoning_tokens,
        }),
        RunEvent::Finished {
            status,
            reason,
            error,
        } => ReplyEvent::End(ReplyEnd {
            status,
            reason,
            error,
        }),
        // A snapshot only stands in for events a restarted journal lost; a gateway
        // request does not outlive its server, so it has seen them.
        RunEvent::Started { .. }
        | RunEvent::ToolResult { .. }
        | RunEvent::Fallback { .. }
        | RunEvent::Snapshot { .. } => return None,
    })
}

/// Stops the run when dropped while armed: the client went away before the end and
/// the deployment asked for that (`cancel_on_disconnect`).
struct StopOnDrop {
    armed: bool,
    core: Core,
    account: Account,
    run: RunId,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (core, account, run) = (self.core.clone(), self.account.clone(), self.run.clone());
        tracing::info!(run = %run, "gateway: client disconnected; stopping its run");
        tokio::spawn(async move {
            if let Err(e) = core.stop_run(&account, &run).await {
                tracing::warn!(run = %run, error = %e, "gateway: cannot stop the run of a disconnected client");
            }
        });
    }
}

/// A streaming response's body, produced piece by piece (each piece one or more
/// whole SSE events). `next` must be cancel-safe: a call dropped before it finished
/// loses nothing (the body asks for more pieces only while they are ready at once).
pub(crate) trait Pieces: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Option<String>> + Send;
}

/// The most bytes one body frame gathers from pieces ready at once.
const FRAME_BYTES: usize = 16 * 1024;

/// The body of a streaming response: each frame carries every piece ready at that
/// moment (up to [`FRAME_BYTES`]), so a burst of events costs one frame and one write
/// instead of one each, and a lone event still leaves at once: nothing waits to fill
/// a frame.
pub(crate) fn body<P: Pieces>(pieces: P) -> axum::body::Body {
    use futures::FutureExt;
    let frames = futures::stream::unfold(pieces, |mut p| async move {
        let mut frame = p.next().await?;
        while frame.len() < FRAME_BYTES {
            match p.next().now_or_never() {
                Some(Some(more)) => frame.push_str(&more),
                // Not ready (the next frame waits for it), or the end.
                _ => break,
            }
        }
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(frame)),
            p,
        ))
    });
    axum::body::Body::from_stream(frames)
}
