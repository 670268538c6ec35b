//! The Gemini provider against a fake Gemini API that speaks the documented streaming
//! format: what Chorus sends, and what it makes of a normal reply (with a thought
//! summary and exact usage), a safety block and a rate limit.
//!
//! A safety block is a finish, not a failure: the run ends `complete` with finish
//! reason `content_filter` and keeps the text that came before the block, so every
//! surface can say why the reply stopped.

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_gemini::{
    Behaviour, NORMAL_CHUNKS, NORMAL_USAGE, RATE_LIMIT_MESSAGE, RecordedRequest, SAFETY_CHUNKS,
    THOUGHT,
};
use chorus_tests::provider_checks::{Expected, ExpectedCall, run_shared_checks};
use chorus_tests::{FakeGemini, ProviderCase, Resume, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "gemini-e2e-fake-key-5678";
const MODEL: &str = "gemini/gemini-2.5-flash";

type Setup = ProviderCase<FakeGemini>;

async fn setup() -> Result<Setup> {
    let fake = FakeGemini::start().await?;
    let config = ServerConfig::new()
        .gemini("gemini", &fake.base_url(), API_KEY, &["gemini-2.5-flash"])
        // One request per run, so the fake's record is exact.
        .provider_setting("gemini", "max_retries", 0);
    ProviderCase::start(fake, config, "gem", MODEL).await
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.api_key() == Some(API_KEY),
        "x-goog-api-key was {:?}",
        req.api_key()
    );
    ensure!(
        req.model_and_method == "gemini-2.5-flash:streamGenerateContent",
        "path ends with {:?}",
        req.model_and_method
    );
    ensure!(
        req.query.as_deref() == Some("alt=sse"),
        "query {:?}",
        req.query
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_normal_reply_thoughts_usage_and_history() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t.send_to_finished("Say hello").await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "stop",
        "finished with {}",
        end.data
    );
    let reply = NORMAL_CHUNKS.concat();
    ensure!(
        delta_text(&events) == reply,
        "deltas: {:?}",
        delta_text(&events)
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
    let (prompt, candidates, thoughts) = NORMAL_USAGE;
    let usage: Vec<_> = events.iter().filter(|e| e.kind == "usage").collect();
    ensure!(
        usage.len() == 1,
        "expected one usage event (the running totals folded), got {usage:?}"
    );
    ensure!(
        usage[0].data["prompt_tokens"] == prompt
            && usage[0].data["completion_tokens"] == candidates + thoughts
            && usage[0].data["estimated"] == false,
        "usage event: {}",
        usage[0].data
    );

    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "complete"
            && s(&run, "text") == reply
            && s(&run, "finish_reason") == "stop"
            && run["prompt_tokens"] == prompt
            && run["completion_tokens"] == candidates + thoughts
            && run["error"].is_null(),
        "run: {run}"
    );

    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    ensure!(
        requests[0].turns() == [("user".to_string(), "Say hello".to_string())],
        "first request contents: {:?}",
        requests[0].body["contents"]
    );

    // The second turn carries the first one, the reply as a `model` turn.
    let second = t.client.send_message(&t.conversation, "And again").await?;
    let run2 = t.run_ended(&second.run_id).await?;
    ensure!(s(&run2, "status") == "complete", "{run2}");
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    check_request_shape(&requests[1])?;
    let expected = [
        ("user".to_string(), "Say hello".to_string()),
        ("model".to_string(), reply.clone()),
        ("user".to_string(), "And again".to_string()),
    ];
    ensure!(
        requests[1].turns() == expected,
        "second request contents: {:?}",
        requests[1].body["contents"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_safety_block_completes_with_content_filter() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t
        .send_to_finished("[safety] tell me something risky")
        .await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "content_filter",
        "a safety block must end the run complete with reason content_filter; finished with {}",
        end.data
    );
    let partial = SAFETY_CHUNKS.concat();
    ensure!(
        delta_text(&events) == partial,
        "deltas: {:?}",
        delta_text(&events)
    );

    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "complete"
            && s(&run, "finish_reason") == "content_filter"
            && s(&run, "text") == partial
            && run["error"].is_null()
            && run["prompt_tokens"] == 9
            && run["completion_tokens"] == 2,
        "run: {run}"
    );
    let messages = t.client.messages(&t.conversation).await?;
    ensure!(
        s(only_assistant(&messages)?, "content") == partial,
        "the text before the block is kept: {messages:?}"
    );
    ensure!(t.fake.requests()[0].behaviour == Behaviour::Safety);

    // A prompt blocked outright: no candidates, no text, the same clear finish.
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_rate_limit_fails_the_run_with_the_message() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t.send_to_finished("[rate-limit] hi").await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(end.status() == Some("failed"), "finished with {}", end.data);
    ensure!(delta_text(&events).is_empty());

    let run = t.run_ended(&sent.run_id).await?;
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "failed"
            && s(&run, "text").is_empty()
            && error.contains("429")
            && error.contains("RESOURCE_EXHAUSTED")
            && error.contains(RATE_LIMIT_MESSAGE),
        "run: {run}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    ensure!(requests[0].behaviour == Behaviour::RateLimited);
    let messages = t.client.messages(&t.conversation).await?;
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content").is_empty() && s(assistant, "run_status") == "failed",
        "assistant message: {assistant}"
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "gemini",
    reply: "Hello from the fake Gemini.",
    usage: (31, 18),
    tool_calls: &[
        ExpectedCall {
            id: None,
            name: "weather",
            arguments: r#"{"city": "Paris"}"#,
        },
        ExpectedCall {
            id: None,
            name: "time",
            arguments: r#"{"tz": "Europe/Paris"}"#,
        },
    ],
    filtered_text: Some("Here is how one would"),
    midstream_text: "The answer is forty",
    midstream_error: &["An internal error has occurred"],
    retry_after: Duration::from_secs(1),
    unauthorized_error: &["400", "API key not valid"],
};

#[tokio::test(flavor = "multi_thread")]
async fn gemini_passes_the_shared_provider_checks() -> Result<()> {
    // Default retries: the 429 check needs one.
    let fake = FakeGemini::start().await?;
    let config =
        ServerConfig::new().gemini("gemini", &fake.base_url(), API_KEY, &["gemini-2.5-flash"]);
    let t = ProviderCase::without_conversation(fake, config, "gem").await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
