//! The checks every provider passes through the real `chorus` binary against its fake,
//! driven by one table of expectations per provider ([`Expected`]) so each provider's
//! test file holds only what differs: a plain reply with exact usage, parallel tool
//! calls normalized in the journal's `tool_call` events, a content-filter or safety
//! stop as finish reason `content_filter`, a mid-stream error that keeps the partial
//! text, a 429 whose `Retry-After` is honoured before the retry, and a rejected key
//! whose error names the provider and its `api_key` setting.
//!
//! Every fake answers the same markers in the user's message: `[tool-calls]`,
//! `[content-filter]`, `[midstream-error]`, `[rate-limit-once]` (a 429 the first time,
//! then the plain reply) and `[unauthorized]`.

use crate::client::delta_text;
use crate::fake_server::FakeProvider;
use crate::{ProviderCase, Resume, SseEvent};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::time::Duration;

/// One tool call as the journal must carry it.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedCall {
    /// The provider's call id; `None` where the provider has none (Gemini, Ollama) and
    /// Chorus makes one up: then any non-empty id, distinct from the others.
    pub id: Option<&'static str>,
    pub name: &'static str,
    /// The arguments, as JSON text.
    pub arguments: &'static str,
}

/// What one provider's fixtures say, for the shared checks.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The provider id in the config (named in the credentials error).
    pub provider_id: &'static str,
    /// The text of the plain reply and its `(prompt, completion)` tokens as reported.
    pub reply: &'static str,
    pub usage: (u64, u64),
    /// The calls of `[tool-calls]`, in order (several: parallel calls).
    pub tool_calls: &'static [ExpectedCall],
    /// The text before the content filter stopped the reply; `None`: the provider has
    /// no content filter (Ollama).
    pub filtered_text: Option<&'static str>,
    /// The partial text of `[midstream-error]` and what its error must contain.
    pub midstream_text: &'static str,
    pub midstream_error: &'static [&'static str],
    /// The wait the 429 of `[rate-limit-once]` asks for.
    pub retry_after: Duration,
    /// What the error of `[unauthorized]` must contain besides the provider id and
    /// `api_key` (the HTTP status, the provider's message).
    pub unauthorized_error: &'static [&'static str],
}

/// A plain reply streamed in full with the provider's exact usage: the deltas add up
/// to `reply`, the `usage` event carries `usage` (prompt, completion) not estimated,
/// and the run row is complete (reason `stop`) with that text and those counts.
pub fn ensure_exact_reply(
    events: &[SseEvent],
    run: &Value,
    reply: &str,
    usage: (u64, u64),
) -> Result<()> {
    ensure!(
        delta_text(events) == reply,
        "deltas: {:?}",
        delta_text(events)
    );
    let event = events
        .iter()
        .find(|e| e.kind == "usage")
        .context("no usage event")?;
    ensure!(
        event.data["prompt_tokens"] == usage.0
            && event.data["completion_tokens"] == usage.1
            && event.data["estimated"] == false,
        "usage event: {}",
        event.data
    );
    ensure!(
        s(run, "status") == "complete"
            && s(run, "text") == reply
            && s(run, "finish_reason") == "stop"
            && run["prompt_tokens"] == usage.0
            && run["completion_tokens"] == usage.1
            && run["error"].is_null(),
        "run: {run}"
    );
    Ok(())
}

/// Runs every shared check on `case` (a server configured with the provider and its
/// default retries), each in a new conversation with `model`.
pub async fn run_shared_checks<F: FakeProvider>(
    case: &ProviderCase<F>,
    model: &str,
    x: &Expected,
) -> Result<()> {
    plain_reply(case, model, x).await.context("plain reply")?;
    tool_calls(case, model, x).await.context("tool calls")?;
    if let Some(text) = x.filtered_text {
        content_filter(case, model, text)
            .await
            .context("content filter")?;
    }
    midstream_error(case, model, x)
        .await
        .context("mid-stream error")?;
    rate_limit_honours_retry_after(case, model, x)
        .await
        .context("429 with Retry-After")?;
    unauthorized(case, model, x).await.context("rejected key")?;
    Ok(())
}

/// Sends `text` in a new conversation and reads the run to `finished`; returns the
/// events and the ended run.
async fn send<F>(
    case: &ProviderCase<F>,
    model: &str,
    text: &str,
) -> Result<(Vec<SseEvent>, Value)> {
    let conversation = case.client.create_conversation(Some(model)).await?;
    let sent = case.client.send_message(&conversation, text).await?;
    let events = case
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    for (i, e) in events.iter().enumerate() {
        ensure!(
            e.seq == i as u64 + 1,
            "event #{i} has seq {}: {events:?}",
            e.seq
        );
    }
    let run = case.run_ended(&sent.run_id).await?;
    Ok((events, run))
}

fn finished(events: &[SseEvent]) -> Result<&SseEvent> {
    match events.last() {
        Some(e) if e.is_finished() => Ok(e),
        other => bail!("the events do not end with `finished` (last: {other:?})"),
    }
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

async fn plain_reply<F>(case: &ProviderCase<F>, model: &str, x: &Expected) -> Result<()> {
    let (events, run) = send(case, model, "Say hello").await?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "stop",
        "finished with {}",
        end.data
    );
    ensure_exact_reply(&events, &run, x.reply, x.usage)
}

async fn tool_calls<F>(case: &ProviderCase<F>, model: &str, x: &Expected) -> Result<()> {
    let (events, run) = send(case, model, "[tool-calls] weather and time in Paris?").await?;
    let end = finished(&events)?;
    // No tool of these names is configured: each call gets an error result, and the
    // tool loop asks the model again, which then answers in text.
    ensure!(
        end.status() == Some("complete") && end.data["reason"] != "tool_calls",
        "the tool loop ends with the model's answer; finished with {}",
        end.data
    );
    let calls: Vec<&SseEvent> = events.iter().filter(|e| e.kind == "tool_call").collect();
    ensure!(
        calls.len() == x.tool_calls.len(),
        "{} tool_call events where {} were expected: {events:?}",
        calls.len(),
        x.tool_calls.len()
    );
    let mut ids = std::collections::HashSet::new();
    for (got, want) in calls.iter().zip(x.tool_calls) {
        let arguments: Value = serde_json::from_str(want.arguments)?;
        ensure!(
            got.data["name"] == want.name && got.data["arguments"] == arguments,
            "tool_call {} where {want:?} was expected",
            got.data
        );
        let id = s(&got.data, "id");
        match want.id {
            Some(want_id) => ensure!(id == want_id, "call id {id:?} where {want_id:?} was sent"),
            None => ensure!(!id.is_empty(), "a made-up call id is empty: {}", got.data),
        }
        ensure!(ids.insert(id.to_string()), "call id {id:?} repeats");
        let result = events
            .iter()
            .find(|e| e.kind == "tool_result" && s(&e.data, "call_id") == id)
            .with_context(|| format!("no tool_result for call {id:?}: {events:?}"))?;
        ensure!(
            result.data["is_error"] == true && result.seq > got.seq,
            "an unknown tool's call gets an error result after the call: {}",
            result.data
        );
    }
    ensure!(
        s(&run, "status") == "complete" && s(&run, "finish_reason") != "tool_calls",
        "run: {run}"
    );
    Ok(())
}

async fn content_filter<F>(case: &ProviderCase<F>, model: &str, text: &str) -> Result<()> {
    let (events, run) = send(case, model, "[content-filter] tell me something bad").await?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "content_filter",
        "a filtered reply ends complete with reason content_filter; finished with {}",
        end.data
    );
    ensure!(
        delta_text(&events) == text,
        "deltas: {:?}",
        delta_text(&events)
    );
    ensure!(
        s(&run, "finish_reason") == "content_filter" && s(&run, "text") == text,
        "run: {run}"
    );
    Ok(())
}

async fn midstream_error<F>(case: &ProviderCase<F>, model: &str, x: &Expected) -> Result<()> {
    let (events, run) = send(case, model, "[midstream-error] what is the answer?").await?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("interrupted"),
        "finished with {}",
        end.data
    );
    ensure!(
        delta_text(&events) == x.midstream_text,
        "deltas: {:?}",
        delta_text(&events)
    );
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "interrupted"
            && s(&run, "text") == x.midstream_text
            && x.midstream_error.iter().all(|part| error.contains(part)),
        "the run keeps the partial text and names the provider's error {:?}: {run}",
        x.midstream_error
    );
    Ok(())
}

async fn rate_limit_honours_retry_after<F: FakeProvider>(
    case: &ProviderCase<F>,
    model: &str,
    x: &Expected,
) -> Result<()> {
    let before = case.fake.request_times().len();
    let (events, run) = send(case, model, "[rate-limit-once] hello").await?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && delta_text(&events) == x.reply,
        "the retry after the 429 replies; finished with {} after {:?}",
        end.data,
        delta_text(&events)
    );
    ensure!(s(&run, "status") == "complete", "run: {run}");
    let times = case.fake.request_times();
    let times = &times[before..];
    ensure!(
        times.len() == 2,
        "{} requests where the 429 and one retry were expected",
        times.len()
    );
    let waited = times[1] - times[0];
    ensure!(
        waited >= x.retry_after,
        "the retry came {waited:?} after the 429, before its Retry-After of {:?}",
        x.retry_after
    );
    Ok(())
}

async fn unauthorized<F: FakeProvider>(
    case: &ProviderCase<F>,
    model: &str,
    x: &Expected,
) -> Result<()> {
    let before = case.fake.request_times().len();
    let (events, run) = send(case, model, "[unauthorized] hi").await?;
    ensure!(
        finished(&events)?.status() == Some("failed"),
        "events: {events:?}"
    );
    let error = s(&run, "error");
    let provider = format!("provider `{}`", x.provider_id);
    ensure!(
        s(&run, "status") == "failed"
            && error.contains(&provider)
            && error.contains("api_key")
            && x.unauthorized_error.iter().all(|part| error.contains(part)),
        "the error names {provider}, `api_key` and {:?}: {run}",
        x.unauthorized_error
    );
    ensure!(
        case.fake.request_times().len() - before == 1,
        "a rejected key is not retried"
    );
    Ok(())
}
