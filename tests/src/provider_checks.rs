//! The checks every provider passes through the real `chorus` binary against its fake,
//! driven by one table of expectations per provider ([`Expected`]) so each provider's
//! test file holds only what differs:
//!
//! - a plain reply with exact usage (one `usage` event, not estimated), read to its
//!   end, and the next turn carrying it as history;
//! - parallel tool calls normalized in the journal's `tool_call` events;
//! - a content-filter or safety stop: finish reason `content_filter`, the text before
//!   it kept, the usage of the filtered reply;
//! - a mid-stream error that keeps the partial text, and (where the fake has a
//!   continuation) `continue` going on from it in the same message;
//! - a 429 whose `Retry-After` is honoured before the retry, and (where the fake has
//!   one) a 429 that is not waited out and fails the run;
//! - a rejected key whose error names the provider and its `api_key` setting;
//! - every request the fake receives meeting the provider's [`Expected::request_shape`].
//!
//! Every fake answers the same markers in the user's message: `[tool-calls]`,
//! `[content-filter]`, `[midstream-error]`, `[rate-limit-once]` (a 429 the first time,
//! then the plain reply) and `[unauthorized]`, and most `[rate-limit]`.

use crate::client::delta_text;
use crate::fake_server::{Behaviour, Fake, RecordedRequest, Wire};
use crate::{ProviderCase, Resume, SseEvent};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::time::Duration;

/// The calls every `tool_calls` fixture makes, in order: `(name, arguments as JSON)`.
pub const FIXTURE_CALLS: [(&str, &str); 2] = [
    ("weather", r#"{"city": "Paris"}"#),
    ("time", r#"{"tz": "Europe/Paris"}"#),
];

/// A reply the provider's filter stopped (`[content-filter]`).
#[derive(Clone, Copy, Debug)]
pub struct Filtered {
    /// The text before the stop.
    pub text: &'static str,
    /// Its `(prompt, completion)` tokens as reported.
    pub usage: (u64, u64),
}

/// A reply that fails after some text (`[midstream-error]`, and the like).
#[derive(Clone, Copy, Debug)]
pub struct MidstreamFailure {
    pub marker: &'static str,
    /// What the fake answers it with.
    pub behaviour: Behaviour,
    /// What the run's error must contain.
    pub error: &'static [&'static str],
}

/// How the continuation request carries the partial text back.
#[derive(Clone, Copy, Debug)]
pub enum ContinuationRequest {
    /// `[question, partial text as the model's turn, a user turn asking to go on]`.
    Instruction,
    /// `[question, this prefill as a final assistant turn]`: the partial text, trimmed
    /// as the API wants it.
    Prefill(&'static str),
}

/// What `continue` of a mid-stream failure makes.
#[derive(Clone, Copy, Debug)]
pub struct Continuation {
    /// The continuation run's text, which the message gets after the partial one.
    pub rest: &'static str,
    /// Its `(prompt, completion)` tokens as reported.
    pub usage: (u64, u64),
    pub request: ContinuationRequest,
}

/// A 429 the run cannot wait out.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitFailure {
    /// `[rate-limit]` (a wait beyond what the server accepts), or a marker whose 429
    /// names no wait.
    pub marker: &'static str,
    /// What the fake answers each attempt with.
    pub behaviour: Behaviour,
    /// What the run's error must contain besides the status `429`.
    pub error: &'static [&'static str],
    /// The requests it takes with the case's settings: 1 when the wait asked for is
    /// refused at once, 1 + `max_retries` when none is named.
    pub requests: usize,
}

/// What one provider's fixtures say, for the shared checks.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The provider id in the config (named in the credentials error).
    pub provider_id: &'static str,
    /// What every request the fake receives must look like on the wire (URL, key,
    /// headers, body fields); an error says what is wrong.
    pub request_shape: fn(&RecordedRequest) -> Result<()>,
    /// The system prompt of the conversations the checks start.
    pub system_prompt: Option<&'static str>,
    /// The role of the model's turns in a request's history (`assistant`, Gemini's
    /// `model`).
    pub model_role: &'static str,
    /// The text of the plain reply and its `(prompt, completion)` tokens as reported.
    pub reply: &'static str,
    pub usage: (u64, u64),
    /// The ids of the calls of `[tool-calls]` ([`FIXTURE_CALLS`]); `None` where the
    /// provider has none (Gemini, Ollama) and Chorus makes one up: then any non-empty
    /// id, distinct from the other.
    pub tool_call_ids: [Option<&'static str>; 2],
    /// `None`: the provider has no content filter (Ollama).
    pub filtered: Option<Filtered>,
    /// The partial text of `[midstream-error]` (and of `more_midstream_failures`).
    pub midstream_text: &'static str,
    /// What the error of `[midstream-error]` must contain.
    pub midstream_error: &'static [&'static str],
    /// Other ways the provider fails mid-stream, checked like `[midstream-error]`.
    pub more_midstream_failures: &'static [MidstreamFailure],
    /// `None`: the fake cannot continue a mid-stream failure.
    pub continuation: Option<Continuation>,
    /// The wait the 429 of `[rate-limit-once]` asks for.
    pub retry_after: Duration,
    pub rate_limit_failure: Option<RateLimitFailure>,
    /// What the error of `[unauthorized]` must contain besides the provider id and
    /// `api_key` (the HTTP status, the provider's message).
    pub unauthorized_error: &'static [&'static str],
}

/// Runs every shared check on `case` (a server configured with the provider, and
/// retries as the table expects), each in a new conversation with `model`.
pub async fn run_shared_checks<W: Wire>(
    case: &ProviderCase<Fake<W>>,
    model: &str,
    x: &Expected,
) -> Result<()> {
    let checks = Checks { case, model, x };
    checks.plain_reply().await.context("plain reply")?;
    checks.tool_calls().await.context("tool calls")?;
    if let Some(filtered) = &x.filtered {
        checks
            .content_filter(filtered)
            .await
            .context("content filter")?;
    }
    let midstream = MidstreamFailure {
        marker: "[midstream-error]",
        behaviour: Behaviour::MidstreamError,
        error: x.midstream_error,
    };
    for failure in std::iter::once(&midstream).chain(x.more_midstream_failures) {
        checks
            .midstream_failure(failure)
            .await
            .with_context(|| format!("mid-stream failure {}", failure.marker))?;
    }
    checks
        .rate_limit_honours_retry_after()
        .await
        .context("429 with Retry-After")?;
    if let Some(failure) = &x.rate_limit_failure {
        checks
            .rate_limit_fails(failure)
            .await
            .with_context(|| format!("429 of {} not waited out", failure.marker))?;
    }
    checks.unauthorized().await.context("rejected key")?;
    Ok(())
}

/// A message sent in its own conversation and its run read to `finished`.
struct Exchange {
    conversation: String,
    question: String,
    run_id: String,
    events: Vec<SseEvent>,
    /// The run once ended.
    run: Value,
    /// The requests the fake received for it.
    requests: Vec<RecordedRequest>,
}

impl Exchange {
    fn finished(&self) -> Result<&SseEvent> {
        match self.events.last() {
            Some(e) if e.is_finished() => Ok(e),
            other => bail!("the events do not end with `finished` (last: {other:?})"),
        }
    }

    fn text(&self) -> String {
        delta_text(&self.events)
    }

    /// Fails unless the fake received exactly these behaviours, in order.
    fn answered_with(&self, behaviours: &[Behaviour]) -> Result<()> {
        let got: Vec<Behaviour> = self.requests.iter().map(|r| r.behaviour).collect();
        ensure!(
            got == behaviours,
            "the fake answered {got:?} where {behaviours:?} was expected"
        );
        Ok(())
    }
}

struct Checks<'a, W: Wire> {
    case: &'a ProviderCase<Fake<W>>,
    model: &'a str,
    x: &'a Expected,
}

impl<W: Wire> Checks<'_, W> {
    async fn new_conversation(&self) -> Result<String> {
        let client = &self.case.client;
        client
            .create_conversation_with(Some(self.model), self.x.system_prompt)
            .await
    }

    /// Sends `text` in `conversation` and reads the run to `finished`, checking its
    /// seqs are 1, 2, 3... and every request the fake received meanwhile has the
    /// provider's shape.
    async fn exchange_in(&self, conversation: String, text: &str) -> Result<Exchange> {
        let client = &self.case.client;
        let before = self.case.fake.requests().len();
        let sent = client.send_message(&conversation, text).await?;
        let events = client
            .events_to_finished(&sent.run_id, Resume::Start)
            .await?;
        for (i, e) in events.iter().enumerate() {
            ensure!(
                e.seq == i as u64 + 1,
                "event #{i} has seq {}: {events:?}",
                e.seq
            );
        }
        let run = self.case.run_ended(&sent.run_id).await?;
        let requests = self.case.fake.requests().split_off(before);
        for (i, request) in requests.iter().enumerate() {
            (self.x.request_shape)(request)
                .with_context(|| format!("request #{i} of {text:?} ({:?})", request.behaviour))?;
        }
        Ok(Exchange {
            conversation,
            question: text.to_string(),
            run_id: sent.run_id,
            events,
            run,
            requests,
        })
    }

    /// [`Self::exchange_in`] a new conversation.
    async fn exchange(&self, text: &str) -> Result<Exchange> {
        let conversation = self.new_conversation().await?;
        self.exchange_in(conversation, text).await
    }

    /// The content and run status of the conversation's only assistant message.
    async fn assistant_message(&self, conversation: &str) -> Result<(String, String)> {
        let messages = self.case.client.messages(conversation).await?;
        let assistants: Vec<&Value> = messages
            .iter()
            .filter(|m| m["role"] == "assistant")
            .collect();
        ensure!(
            assistants.len() == 1 && messages.len() == 2,
            "expected the question and one assistant message: {messages:?}"
        );
        Ok((
            s(assistants[0], "content").to_string(),
            s(assistants[0], "run_status").to_string(),
        ))
    }

    async fn plain_reply(&self) -> Result<()> {
        let x = self.x;
        let first = self.exchange("Say hello").await?;
        let end = first.finished()?;
        ensure!(
            end.status() == Some("complete") && end.data["reason"] == "stop",
            "finished with {}",
            end.data
        );
        ensure_exact_reply(&first.events, &first.run, x.reply, x.usage)?;
        first.answered_with(&[Behaviour::Normal])?;
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(r, c)| (r.to_string(), c.to_string()))
                .collect()
        };
        ensure!(
            first.requests[0].messages() == owned(&[("user", "Say hello")]),
            "first request's history: {:?}",
            first.requests[0].messages()
        );
        ensure!(
            !first.requests[0].client_hung_up(),
            "Chorus hung up before the end of a complete reply"
        );

        // The second turn carries the first one as history.
        let second = self
            .exchange_in(first.conversation.clone(), "And again")
            .await?;
        ensure!(s(&second.run, "status") == "complete", "{}", second.run);
        second.answered_with(&[Behaviour::Normal])?;
        let expected = owned(&[
            ("user", "Say hello"),
            (x.model_role, x.reply),
            ("user", "And again"),
        ]);
        ensure!(
            second.requests[0].messages() == expected,
            "second request's history: {:?}",
            second.requests[0].messages()
        );
        ensure!(
            !second.requests[0].client_hung_up(),
            "Chorus hung up before the end of a complete reply"
        );
        Ok(())
    }

    async fn tool_calls(&self) -> Result<()> {
        let x = self.x;
        let sent = self
            .exchange("[tool-calls] weather and time in Paris?")
            .await?;
        let (events, run) = (&sent.events, &sent.run);
        let end = sent.finished()?;
        // No tool of these names is configured: each call gets an error result, and the
        // tool loop asks the model again, which then answers in text.
        ensure!(
            end.status() == Some("complete") && end.data["reason"] != "tool_calls",
            "the tool loop ends with the model's answer; finished with {}",
            end.data
        );
        sent.answered_with(&[Behaviour::ToolCalls, Behaviour::Normal])?;
        let calls: Vec<&SseEvent> = events.iter().filter(|e| e.kind == "tool_call").collect();
        ensure!(
            calls.len() == FIXTURE_CALLS.len(),
            "{} tool_call events where {} were expected: {events:?}",
            calls.len(),
            FIXTURE_CALLS.len()
        );
        let mut ids = std::collections::HashSet::new();
        for ((got, (name, arguments)), want_id) in
            calls.iter().zip(FIXTURE_CALLS).zip(x.tool_call_ids)
        {
            let arguments: Value = serde_json::from_str(arguments)?;
            ensure!(
                got.data["name"] == name && got.data["arguments"] == arguments,
                "tool_call {} where {name} {arguments} was expected",
                got.data
            );
            let id = s(&got.data, "id");
            match want_id {
                Some(want_id) => {
                    ensure!(id == want_id, "call id {id:?} where {want_id:?} was sent")
                }
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
            s(run, "status") == "complete" && s(run, "finish_reason") != "tool_calls",
            "run: {run}"
        );
        Ok(())
    }

    async fn content_filter(&self, filtered: &Filtered) -> Result<()> {
        let sent = self
            .exchange("[content-filter] tell me something bad")
            .await?;
        let end = sent.finished()?;
        ensure!(
            end.status() == Some("complete") && end.data["reason"] == "content_filter",
            "a filtered reply ends complete with reason content_filter; finished with {}",
            end.data
        );
        ensure!(sent.text() == filtered.text, "deltas: {:?}", sent.text());
        sent.answered_with(&[Behaviour::ContentFilter])?;
        let run = &sent.run;
        ensure!(
            s(run, "status") == "complete"
                && s(run, "finish_reason") == "content_filter"
                && s(run, "text") == filtered.text
                && run["error"].is_null()
                && run["prompt_tokens"] == filtered.usage.0
                && run["completion_tokens"] == filtered.usage.1,
            "run: {run}"
        );
        let (content, _) = self.assistant_message(&sent.conversation).await?;
        ensure!(
            content == filtered.text,
            "the text before the stop is kept: {content:?}"
        );
        Ok(())
    }

    async fn midstream_failure(&self, failure: &MidstreamFailure) -> Result<()> {
        let x = self.x;
        let partial = x.midstream_text;
        let sent = self
            .exchange(&format!("{} what is the answer?", failure.marker))
            .await?;
        let end = sent.finished()?;
        ensure!(
            end.status() == Some("interrupted"),
            "finished with {}",
            end.data
        );
        ensure!(sent.text() == partial, "deltas: {:?}", sent.text());
        sent.answered_with(&[failure.behaviour])?;
        let run = &sent.run;
        let error = s(run, "error");
        ensure!(
            s(run, "status") == "interrupted"
                && s(run, "text") == partial
                && failure.error.iter().all(|part| error.contains(part)),
            "the run keeps the partial text and names the provider's error {:?}: {run}",
            failure.error
        );
        let (content, _) = self.assistant_message(&sent.conversation).await?;
        ensure!(content == partial, "the message holds {content:?}");
        match &x.continuation {
            Some(continuation) => self.continuation(&sent, continuation).await,
            None => Ok(()),
        }
    }

    /// `continue` of the interrupted run `sent`: the provider goes on from its partial
    /// text, and the message is that text extended, neither repeated nor doubled up.
    async fn continuation(&self, sent: &Exchange, continuation: &Continuation) -> Result<()> {
        let x = self.x;
        let partial = x.midstream_text;
        let before = self.case.fake.requests().len();
        let next = self.case.client.continue_run(&sent.run_id).await?;
        let run = self.case.run_ended(&next).await?;
        ensure!(
            s(&run, "status") == "complete"
                && s(&run, "text") == continuation.rest
                && s(&run, "finish_reason") == "stop"
                && run["prompt_tokens"] == continuation.usage.0
                && run["completion_tokens"] == continuation.usage.1,
            "continuation run: {run}"
        );
        let requests = self.case.fake.requests().split_off(before);
        ensure!(requests.len() == 1, "{} requests", requests.len());
        let request = &requests[0];
        (x.request_shape)(request).context("the continuation request")?;
        ensure!(
            request.behaviour == Behaviour::Continuation,
            "the fake took the continuation request for {:?}",
            request.behaviour
        );
        let got = request.messages();
        let question = sent.question.as_str();
        let as_sent = match continuation.request {
            ContinuationRequest::Instruction => {
                got.len() == 3
                    && got[0] == ("user".to_string(), question.to_string())
                    && got[1] == (x.model_role.to_string(), partial.to_string())
                    && got[2].0 == "user"
                    && got[2].1 != question
                    && got[2].1.contains("Do not repeat")
            }
            ContinuationRequest::Prefill(prefill) => {
                got == [
                    ("user".to_string(), question.to_string()),
                    ("assistant".to_string(), prefill.to_string()),
                ]
            }
        };
        ensure!(
            as_sent,
            "the continuation request is not {:?} of {question:?} and {partial:?}: {got:?}",
            continuation.request
        );
        let (content, _) = self.assistant_message(&sent.conversation).await?;
        ensure!(
            content == format!("{partial}{}", continuation.rest),
            "the message after continue is {content:?}"
        );
        Ok(())
    }

    async fn rate_limit_honours_retry_after(&self) -> Result<()> {
        let x = self.x;
        let before = self.case.fake.request_times().len();
        let sent = self.exchange("[rate-limit-once] hello").await?;
        let end = sent.finished()?;
        ensure!(
            end.status() == Some("complete") && sent.text() == x.reply,
            "the retry after the 429 replies; finished with {} after {:?}",
            end.data,
            sent.text()
        );
        ensure!(s(&sent.run, "status") == "complete", "run: {}", sent.run);
        sent.answered_with(&[Behaviour::RateLimitedOnce, Behaviour::Normal])?;
        let times = self.case.fake.request_times().split_off(before);
        let waited = times[1] - times[0];
        ensure!(
            waited >= x.retry_after,
            "the retry came {waited:?} after the 429, before its Retry-After of {:?}",
            x.retry_after
        );
        Ok(())
    }

    async fn rate_limit_fails(&self, failure: &RateLimitFailure) -> Result<()> {
        let sent = self.exchange(&format!("{} hi", failure.marker)).await?;
        let end = sent.finished()?;
        ensure!(end.status() == Some("failed"), "finished with {}", end.data);
        ensure!(sent.text().is_empty(), "deltas: {:?}", sent.text());
        sent.answered_with(&vec![failure.behaviour; failure.requests])?;
        let run = &sent.run;
        let error = s(run, "error");
        ensure!(
            s(run, "status") == "failed"
                && s(run, "text").is_empty()
                && error.contains("429")
                && failure.error.iter().all(|part| error.contains(part)),
            "the run fails naming the 429 and {:?}: {run}",
            failure.error
        );
        let (content, status) = self.assistant_message(&sent.conversation).await?;
        ensure!(
            content.is_empty() && status == "failed",
            "assistant message: {content:?}, {status}"
        );
        Ok(())
    }

    async fn unauthorized(&self) -> Result<()> {
        let x = self.x;
        let sent = self.exchange("[unauthorized] hi").await?;
        ensure!(
            sent.finished()?.status() == Some("failed"),
            "events: {:?}",
            sent.events
        );
        let run = &sent.run;
        let error = s(run, "error");
        let provider = format!("provider `{}`", x.provider_id);
        ensure!(
            s(run, "status") == "failed"
                && error.contains(&provider)
                && error.contains("api_key")
                && x.unauthorized_error.iter().all(|part| error.contains(part)),
            "the error names {provider}, `api_key` and {:?}: {run}",
            x.unauthorized_error
        );
        // Exactly one request: a rejected key is not retried.
        sent.answered_with(&[Behaviour::Unauthorized])
            .context("a rejected key is not retried")
    }
}

/// A plain reply streamed in full with the provider's exact usage: the deltas add up
/// to `reply`, the one `usage` event carries `usage` (prompt, completion) not
/// estimated, and the run row is complete (reason `stop`) with that text and those
/// counts.
fn ensure_exact_reply(
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
    let usage_events: Vec<&SseEvent> = events.iter().filter(|e| e.kind == "usage").collect();
    let [event] = usage_events.as_slice() else {
        bail!("one usage event expected (running totals folded): {usage_events:?}");
    };
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

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}
