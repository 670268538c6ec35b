//! The Gemini provider against a fake Gemini API that speaks the documented streaming
//! format: the shared provider checks (`provider_checks.rs`) with this provider's
//! table (history with `model` turns, a `SAFETY` stop) and request shape, and what
//! only Gemini has: thought summaries streamed as reasoning, and a prompt blocked
//! outright.
//!
//! A safety block is a finish, not a failure: the run ends `complete` with finish
//! reason `content_filter` and keeps the text that came before the block, so every
//! surface can say why the reply stopped.

use crate::{assert_consecutive, finished, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_gemini::{Behaviour, NORMAL_CHUNKS, RecordedRequest, THOUGHT};
use chorus_tests::provider_checks::{Expected, Filtered, RateLimitFailure, run_shared_checks};
use chorus_tests::{FakeGemini, ProviderCase, Resume, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "gemini-e2e-fake-key-5678";
const MODEL: &str = "gemini/gemini-2.5-flash";

type Setup = ProviderCase<FakeGemini>;

async fn setup() -> Result<Setup> {
    let fake = FakeGemini::start().await?;
    let config = ServerConfig::new()
        .gemini("gemini", &fake.base_url(), API_KEY, &["gemini-2.5-flash"])
        // One retry: the 429 of `[rate-limit-once]` is waited out, and a 429 naming no
        // delay makes exactly two requests, so the fake's record is exact.
        .provider_setting("gemini", "max_retries", 1);
    ProviderCase::start(fake, config, "gem", MODEL).await
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.header("x-goog-api-key") == Some(API_KEY),
        "x-goog-api-key was {:?}",
        req.header("x-goog-api-key")
    );
    ensure!(
        req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        "path {:?}",
        req.path
    );
    ensure!(
        req.query.as_deref() == Some("alt=sse"),
        "query {:?}",
        req.query
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_thought_summary_streams_as_reasoning() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t.send_to_finished("Say hello").await?;
    assert_consecutive(&events, 1)?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let reasoning: String = events
        .iter()
        .filter(|e| e.kind == "reasoning")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    ensure!(
        reasoning == THOUGHT,
        "the thought summary came through as {reasoning:?}"
    );
    ensure!(
        delta_text(&events) == NORMAL_CHUNKS.concat(),
        "the thought leaked into the answer, or the answer is wrong: {:?}",
        delta_text(&events)
    );
    let run = t.run_ended(&sent.run_id).await?;
    ensure!(s(&run, "status") == "complete", "run: {run}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_blocked_prompt_completes_with_content_filter() -> Result<()> {
    // A prompt blocked outright: no candidates, no text, the same clear finish as a
    // safety stop.
    let t = setup().await?;
    let blocked = t
        .client
        .send_message(&t.conversation, "[blocked-prompt] something worse")
        .await?;
    let events = t
        .client
        .events_to_finished(&blocked.run_id, Resume::Start)
        .await?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "content_filter",
        "a blocked prompt finished with {}",
        end.data
    );
    ensure!(delta_text(&events).is_empty());
    let run = t.run_ended(&blocked.run_id).await?;
    ensure!(
        s(&run, "status") == "complete"
            && s(&run, "finish_reason") == "content_filter"
            && s(&run, "text").is_empty()
            && run["prompt_tokens"] == 7
            && run["completion_tokens"] == 0,
        "run: {run}"
    );
    let requests = t.fake.requests();
    ensure!(
        requests.len() == 1 && requests[0].behaviour == Behaviour::BlockedPrompt,
        "{requests:?}"
    );
    check_request_shape(&requests[0])
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "gemini",
    request_shape: check_request_shape,
    system_prompt: None,
    model_role: "model",
    reply: "Hello from the fake Gemini.",
    // The completion counts the thoughts: 6 candidate tokens + 12 thought tokens.
    usage: (31, 18),
    tool_call_ids: [None, None],
    filtered: Some(Filtered {
        text: "Here is how one would",
        usage: (9, 2),
    }),
    midstream_text: "The answer is forty",
    midstream_error: &["An internal error has occurred"],
    more_midstream_failures: &[],
    continuation: None,
    retry_after: Duration::from_secs(1),
    // No delay named: retried once (max_retries = 1), then failed with the message.
    rate_limit_failure: Some(RateLimitFailure {
        marker: "[rate-limit]",
        behaviour: Behaviour::RateLimited,
        error: &[
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
        ],
        requests: 2,
    }),
    unauthorized_error: &["400", "API key not valid"],
};

#[tokio::test(flavor = "multi_thread")]
async fn gemini_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
