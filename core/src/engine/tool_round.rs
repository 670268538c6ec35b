//! One tool round of a run: after a generation ends with tool calls, run them
//! (concurrently, each under the host's timeout and output limit), journal each
//! `tool_result`, record the round as a [`ToolStep`], and extend the run's request so
//! the model sees its calls and their results on the next generation.
//!
//! Steps are saved to the run row when a round starts and when it ends (never per
//! token), so a run interrupted during a call keeps the calls it made and a
//! continuation runs them ([`answer_pending`]). A stop cancels the calls in flight
//! (their futures are dropped, which sends MCP `notifications/cancelled`) and answers
//! them as cancelled; a shutdown leaves them pending for a continuation.

use super::state::{Halt, RunState};
use crate::journal::RunEvent;
use crate::tools::ToolResult;
use chorus_model::history::{StepCall, StepResult, ToolStep, tool_message};
use chorus_providers::{ChatMessage, ChatRole, ToolCall};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::Instrument;

pub(super) enum RoundEnd {
    /// The results are in the request: generate again.
    Continue,
    /// The model asked for more rounds than `tools.max_steps` allows.
    MaxSteps,
    Halted(Halt),
}

/// One round: the model's `calls`, made at the current end of the run's text.
pub(super) async fn run_round(run: &mut RunState<'_>, calls: Vec<ToolCall>) -> RoundEnd {
    let text = run.progress().text.clone();
    run.steps.push(ToolStep {
        at: text.len(),
        calls: calls.iter().map(StepCall::from).collect(),
        results: Vec::new(),
    });
    if run.rounds >= run.inner.tools.settings().max_steps {
        // The calls are saved unanswered: a continuation runs them.
        run.save_steps().await;
        return RoundEnd::MaxSteps;
    }
    run.rounds += 1;
    // The assistant's text since the last round (plus a continuation's prefill) goes
    // into the history with its calls.
    let segment = format!(
        "{}{}",
        std::mem::take(&mut run.carry),
        &text[run.segment_from.min(text.len())..]
    );
    run.segment_from = text.len();
    run.request.prefill = None;
    run.request.messages.push(ChatMessage {
        role: ChatRole::Assistant,
        content: segment,
        tool_calls: calls.clone(),
        ..Default::default()
    });
    run.save_steps().await;
    let span = tracing::info_span!(
        "chorus.tool_round",
        chorus.round = run.rounds,
        chorus.calls = calls.len()
    );
    match execute_calls(run, &calls).instrument(span).await {
        Some(halt) => RoundEnd::Halted(halt),
        None => RoundEnd::Continue,
    }
}

/// Runs the calls an interrupted run left without results, before the model is asked
/// again. They are already in the request's last assistant message and in the previous
/// run's last step, so this round's step holds only their results.
pub(super) async fn answer_pending(run: &mut RunState<'_>) -> Option<Halt> {
    run.steps.push(ToolStep::default());
    run.request.prefill = None;
    let job = run.job;
    let span = tracing::info_span!(
        "chorus.tool_round",
        chorus.round = 0,
        chorus.calls = job.pending_calls.len(),
        chorus.pending = true
    );
    execute_calls(run, &job.pending_calls)
        .instrument(span)
        .await
}

/// Runs `calls` concurrently, journals and records each result as it comes, and adds
/// the results to the request. Returns how the run was halted, if it was.
async fn execute_calls(run: &mut RunState<'_>, calls: &[ToolCall]) -> Option<Halt> {
    let mut results: Vec<Option<ToolResult>> = vec![None; calls.len()];
    let halted = collect_results(run, calls, &mut results).await;
    if halted == Some(Halt::Stop) {
        for (i, call) in calls.iter().enumerate() {
            if results[i].is_none() {
                let r = ToolResult::error("cancelled: the run was stopped during this call");
                record(run, call, &r).await;
                results[i] = Some(r);
            }
        }
    }
    run.save_steps().await;
    if halted.is_some() {
        return halted;
    }
    for (call, result) in calls.iter().zip(results) {
        let r = result.unwrap_or_else(|| ToolResult::error("no result"));
        run.request
            .messages
            .push(tool_message(&call.id, &call.name, &r.output, r.is_error));
    }
    None
}

/// Waits for the calls' results, recording each as it arrives, until all are in or the
/// run is halted; returning drops the calls still in flight, which cancels them.
async fn collect_results(
    run: &mut RunState<'_>,
    calls: &[ToolCall],
    results: &mut [Option<ToolResult>],
) -> Option<Halt> {
    let offered: Vec<String> = run.request.tools.iter().map(|t| t.name.clone()).collect();
    let mut running: FuturesUnordered<_> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let host = run.inner.tools.clone();
            let allowed = offered.contains(&call.name);
            let (name, args) = (call.name.clone(), call.arguments.clone());
            let context = run.job.tool_context.clone();
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
    let (stop, inner) = (run.stop, run.inner);
    while !running.is_empty() {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Some(Halt::Stop),
            _ = inner.shutdown.cancelled() => return Some(Halt::Shutdown),
            Some((i, result)) = running.next() => {
                record(run, &calls[i], &result).await;
                results[i] = Some(result);
            }
        }
    }
    None
}

/// Journals one call's result and adds it to the round's step.
async fn record(run: &mut RunState<'_>, call: &ToolCall, r: &ToolResult) {
    tracing::info!(run = %run.job.run_id, tool = %call.name, is_error = r.is_error, truncated = r.truncated, bytes = r.output.len(), "tool call ended");
    run.append(RunEvent::ToolResult {
        call_id: call.id.clone(),
        name: call.name.clone(),
        output: r.output.clone(),
        is_error: r.is_error,
        truncated: r.truncated,
        details: r.details.clone(),
    })
    .await;
    if let Some(step) = run.steps.last_mut() {
        step.results.push(StepResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            output: r.output.clone(),
            is_error: r.is_error,
            truncated: r.truncated,
        });
    }
}
