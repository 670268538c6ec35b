//! The tool half of a run: after the model asks for tool calls, run them (concurrently,
//! each under the host's timeout and output limit), journal each `tool_result`, record
//! the round as a [`ToolStep`], and extend the request so the model sees its calls and
//! their results on the next generation.
//!
//! Steps are saved to the run row when a round starts and when it ends (never per
//! token), so a run interrupted during a call keeps the calls it made and a
//! continuation runs them. A stop cancels the calls in flight (their futures are
//! dropped, which sends MCP `notifications/cancelled`) and answers them as cancelled;
//! a shutdown leaves them pending for a continuation.

use super::EngineInner;
use super::checkpoint::SharedProgress;
use super::execute::Writer;
use crate::journal::RunEvent;
use crate::tools::ToolResult;
use chorus_model::history::{StepCall, StepResult, ToolStep, tool_message};
use chorus_providers::{ChatMessage, ChatRequest, ChatRole, ToolCall};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(super) enum StepEnd {
    /// The results are in the request: generate again.
    Continue,
    /// The model asked for more rounds than `tools.max_steps` allows.
    MaxSteps,
    Stopped(&'static str),
}

/// The tool state of one run.
pub(super) struct ToolTurn {
    /// The request of the next generation (history grows by each round).
    pub request: ChatRequest,
    steps: Vec<ToolStep>,
    rounds: u32,
    /// Offset into the run's text where the current assistant segment starts.
    segment_from: usize,
    /// Text of the current segment from before this run (a continuation's prefill).
    carry: String,
}

impl ToolTurn {
    pub fn new(job: &super::RunJob) -> Self {
        Self {
            carry: job.request.prefill.clone().unwrap_or_default(),
            request: job.request.clone(),
            steps: Vec::new(),
            rounds: 0,
            segment_from: 0,
        }
    }

    /// Whether the run made or answered any tool call.
    pub fn steps(&self) -> &[ToolStep] {
        &self.steps
    }

    /// One round: the model's `calls` at the current end of the run's text.
    pub async fn run_step(
        &mut self,
        inner: &Arc<EngineInner>,
        w: &mut Writer<'_>,
        progress: &SharedProgress,
        stop: &CancellationToken,
        calls: Vec<ToolCall>,
    ) -> StepEnd {
        let text = progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone();
        self.steps.push(ToolStep {
            at: text.len(),
            calls: calls.iter().map(StepCall::from).collect(),
            results: Vec::new(),
        });
        if self.rounds >= inner.tools.settings().max_steps {
            self.save(inner, w).await;
            return StepEnd::MaxSteps;
        }
        self.rounds += 1;
        let segment = format!(
            "{}{}",
            std::mem::take(&mut self.carry),
            &text[self.segment_from.min(text.len())..]
        );
        self.segment_from = text.len();
        self.request.prefill = None;
        self.request.messages.push(ChatMessage {
            role: ChatRole::Assistant,
            content: segment,
            tool_calls: calls.clone(),
            ..Default::default()
        });
        self.save(inner, w).await;
        self.run_calls(inner, w, stop, calls, false).await
    }

    /// Runs `calls` and adds their results to the request. `pending`: these are the
    /// calls an interrupted run left, already in the request's last assistant message.
    pub async fn run_calls(
        &mut self,
        inner: &Arc<EngineInner>,
        w: &mut Writer<'_>,
        stop: &CancellationToken,
        calls: Vec<ToolCall>,
        pending: bool,
    ) -> StepEnd {
        if pending {
            // Results for the previous run's step, which holds the calls.
            self.steps.push(ToolStep::default());
            self.request.prefill = None;
        }
        let offered: Vec<String> = self.request.tools.iter().map(|t| t.name.clone()).collect();
        let mut results: Vec<Option<ToolResult>> = vec![None; calls.len()];
        let mut running: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let host = inner.tools.clone();
                let allowed = offered.contains(&call.name);
                let (name, args) = (call.name.clone(), call.arguments.clone());
                let context = w.job.tool_context.clone();
                async move {
                    let r = if allowed {
                        host.call(&name, args, &context).await
                    } else {
                        ToolResult::error(format!(
                            "the tool `{name}` is not offered to this conversation"
                        ))
                    };
                    (i, r)
                }
            })
            .collect();
        let mut stopped_by = None;
        while !running.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => { stopped_by = Some("stopped"); break; }
                _ = inner.shutdown.cancelled() => { stopped_by = Some("shutdown"); break; }
                Some((i, result)) = running.next() => {
                    self.record(w, &calls[i], &result).await;
                    results[i] = Some(result);
                }
            }
        }
        drop(running); // cancels the calls still in flight
        if stopped_by == Some("stopped") {
            for (i, call) in calls.iter().enumerate() {
                if results[i].is_none() {
                    let r = ToolResult::error("cancelled: the run was stopped during this call");
                    self.record(w, call, &r).await;
                    results[i] = Some(r);
                }
            }
        }
        self.save(inner, w).await;
        if let Some(by) = stopped_by {
            return StepEnd::Stopped(by);
        }
        for (call, result) in calls.iter().zip(results) {
            let r = result.unwrap_or_else(|| ToolResult::error("no result"));
            self.request
                .messages
                .push(tool_message(&call.id, &call.name, &r.output, r.is_error));
        }
        StepEnd::Continue
    }

    async fn record(&mut self, w: &mut Writer<'_>, call: &ToolCall, r: &ToolResult) {
        tracing::info!(run = %w.job.run_id, tool = %call.name, is_error = r.is_error, truncated = r.truncated, bytes = r.output.len(), "tool call ended");
        w.append(RunEvent::ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            output: r.output.clone(),
            is_error: r.is_error,
            truncated: r.truncated,
            details: r.details.clone(),
        })
        .await;
        if let Some(step) = self.steps.last_mut() {
            step.results.push(StepResult {
                call_id: call.id.clone(),
                name: call.name.clone(),
                output: r.output.clone(),
                is_error: r.is_error,
                truncated: r.truncated,
            });
        }
    }

    /// Writes the steps to the run row (once per round boundary, not per token).
    pub async fn save(&self, inner: &EngineInner, w: &Writer<'_>) {
        if let Err(e) = inner
            .store
            .save_tool_steps(&w.job.run_id, &inner.settings.owner, &self.steps)
            .await
        {
            tracing::warn!(run = %w.job.run_id, error = %e, "could not save the run's tool steps");
        }
    }
}
