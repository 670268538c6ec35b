//! The Anthropic provider against a fake Messages API server that speaks the documented
//! streaming format (named events, pings, content blocks): the shared provider checks
//! (`provider_checks.rs`) with this provider's table, where a continuation is a
//! trimmed assistant prefill, and its request shape (headers, `max_tokens`, no
//! `system` role, alternating turns); and what only it has: a top-level system prompt
//! and thinking streamed as reasoning.

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_anthropic::{Behaviour, RecordedRequest, THINKING_ANSWER, THINKING_CHUNKS};
use chorus_tests::provider_checks::{
    Continuation, ContinuationRequest, Expected, Filtered, RateLimitFailure, run_shared_checks,
};
use chorus_tests::{FakeAnthropic, ProviderCase, Resume, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "sk-ant-e2e-fake-key-1234";
const MODEL: &str = "claude/claude-sonnet-4-5";
const SYSTEM_PROMPT: &str = "You are a terse assistant. Answer in French.";

type Setup = ProviderCase<FakeAnthropic>;

async fn setup() -> Result<Setup> {
    let fake = FakeAnthropic::start().await?;
    let config =
        ServerConfig::new().anthropic("claude", &fake.base_url(), API_KEY, &["claude-sonnet-4-5"]);
    ProviderCase::without_conversation(fake, config, "ant").await
}

fn roles_and_contents(messages: &[(String, String)]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect()
}

/// What every request must look like on the wire.
fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.behaviour != Behaviour::Rejected,
        "the fake refused the request as the real API would: {}",
        req.body
    );
    ensure!(
        req.header("x-api-key") == Some(API_KEY),
        "x-api-key was {:?}",
        req.header("x-api-key")
    );
    ensure!(
        req.header("anthropic-version") == Some("2023-06-01"),
        "anthropic-version was {:?}",
        req.header("anthropic-version")
    );
    ensure!(
        req.header("authorization").is_none(),
        "the key must not go out as a bearer token"
    );
    ensure!(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type was {:?}",
        req.header("content-type")
    );
    ensure!(
        req.body["model"] == "claude-sonnet-4-5",
        "model: {}",
        req.body["model"]
    );
    ensure!(req.body["stream"] == true, "stream: {}", req.body["stream"]);
    ensure!(
        req.body["max_tokens"] == 4096,
        "max_tokens (required by the API, 4096 by default): {}",
        req.body["max_tokens"]
    );
    let messages = req.messages();
    ensure!(
        messages.iter().all(|(role, _)| role != "system"),
        "a system role went into messages: {messages:?}"
    );
    ensure!(
        messages.windows(2).all(|w| w[0].0 != w[1].0),
        "the turns do not alternate: {messages:?}"
    );
    Ok(())
}

/// [`check_request_shape`] of a conversation without a system prompt: none is sent.
fn check_request_without_system_prompt(req: &RecordedRequest) -> Result<()> {
    check_request_shape(req)?;
    ensure!(
        req.body.get("system").is_none(),
        "a system prompt was sent without one: {}",
        req.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn system_prompt_goes_top_level_and_thinking_streams_as_reasoning() -> Result<()> {
    let t = setup().await?;
    let conversation = t
        .client
        .create_conversation_with(Some(MODEL), Some(SYSTEM_PROMPT))
        .await?;
    let sent = t
        .client
        .send_message(&conversation, "[think] Say hello")
        .await?;
    let events = t
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("complete"));
    let reasoning: String = events
        .iter()
        .filter(|e| e.kind == "reasoning")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    ensure!(
        reasoning == THINKING_CHUNKS.concat(),
        "reasoning: {reasoning:?}"
    );
    let answer = THINKING_ANSWER.concat();
    ensure!(
        delta_text(&events) == answer,
        "the thinking leaked into the answer, or the answer is wrong: {:?}",
        delta_text(&events)
    );

    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    let req = &requests[0];
    check_request_shape(req)?;
    ensure!(req.behaviour == Behaviour::Thinking);
    ensure!(
        req.body["system"] == SYSTEM_PROMPT,
        "system: {}",
        req.body["system"]
    );
    ensure!(
        roles_and_contents(&req.messages()) == [("user", "[think] Say hello")],
        "messages: {:?}",
        req.messages()
    );
    let messages = t.client.messages(&conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == answer);
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "claude",
    request_shape: check_request_without_system_prompt,
    system_prompt: None,
    model_role: "assistant",
    reply: "Hello from the fake Claude.",
    // The prompt tokens count those written to and read from the cache: 19 + 2 + 4.
    usage: (25, 6),
    tool_call_ids: [Some("toolu_01WeatherAAAA"), Some("toolu_01TimeBBBBBB")],
    filtered: Some(Filtered {
        text: "Here is how one would",
        usage: (15, 4),
    }),
    midstream_text: "The answer is:\n\n",
    midstream_error: &["overloaded_error", "Overloaded"],
    more_midstream_failures: &[],
    // The partial text goes back as an assistant prefill, without the trailing
    // whitespace the API refuses; the model repeats the "\n\n" the prefill lost and
    // Chorus drops it once.
    continuation: Some(Continuation {
        rest: "Forty-two, as always.",
        usage: (41, 5),
        request: ContinuationRequest::Prefill("The answer is:"),
    }),
    retry_after: Duration::from_secs(1),
    // The fake asks for an hour's wait, past any retry Chorus makes: one request only,
    // which also shows that `retry-after` was read (without it Chorus backs off and
    // retries).
    rate_limit_failure: Some(RateLimitFailure {
        marker: "[rate-limit]",
        behaviour: Behaviour::RateLimited,
        error: &[
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ],
        requests: 1,
    }),
    unauthorized_error: &["401", "authentication_error", "invalid x-api-key"],
};

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
