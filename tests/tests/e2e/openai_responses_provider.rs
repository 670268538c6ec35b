//! The OpenAI Responses API provider against a fake `/v1/responses` server that
//! replays the documented typed event sequence: the shared provider checks
//! (`provider_checks.rs`) with this provider's table, in conversations with a system
//! prompt, and its request shape: `stream`, `store: false`, `instructions` from the
//! system prompt, `input` items and no Chat Completions fields. Its own failure,
//! `response.failed` mid-stream, is a row of the table.

use anyhow::{Result, ensure};
use chorus_tests::fake_openai_responses::{Behaviour, RecordedRequest};
use chorus_tests::provider_checks::{
    Continuation, ContinuationRequest, Expected, Filtered, MidstreamFailure, RateLimitFailure,
    run_shared_checks,
};
use chorus_tests::{FakeOpenAiResponses, ProviderCase, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "sk-e2e-responses-key-5678";
const MODEL: &str = "oair/gpt-5-mini";
const SYSTEM_PROMPT: &str = "You are a terse assistant. Answer in one sentence.";

type Setup = ProviderCase<FakeOpenAiResponses>;

async fn setup() -> Result<Setup> {
    let fake = FakeOpenAiResponses::start().await?;
    // The fake's `Retry-After: 7` exceeds the 5 s this server honours, so a rate limit
    // fails the run at once instead of retrying.
    let config = ServerConfig::new()
        .openai_responses("oair", &fake.base_url(), API_KEY, &["gpt-5-mini"])
        .provider_setting("oair", "max_retry_wait_secs", 5);
    ProviderCase::without_conversation(fake, config, "oair").await
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.authorization() == Some(&format!("Bearer {API_KEY}")),
        "Authorization was {:?}",
        req.authorization()
    );
    ensure!(
        req.body["model"] == "gpt-5-mini",
        "model: {}",
        req.body["model"]
    );
    ensure!(req.body["stream"] == true, "stream: {}", req.body["stream"]);
    ensure!(req.body["store"] == false, "store: {}", req.body["store"]);
    ensure!(
        req.body["instructions"] == SYSTEM_PROMPT,
        "instructions: {}",
        req.body["instructions"]
    );
    ensure!(
        req.messages().iter().all(|(role, _)| role != "system"),
        "the system prompt is sent as instructions, not as an input item: {:?}",
        req.messages()
    );
    ensure!(
        req.body.get("messages").is_none() && req.body.get("stream_options").is_none(),
        "Chat Completions fields in a Responses request: {}",
        req.body
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "oair",
    request_shape: check_request_shape,
    system_prompt: Some(SYSTEM_PROMPT),
    model_role: "assistant",
    reply: "Hello from the responses fake.",
    usage: (31, 7),
    tool_call_ids: [Some("call_weather_1"), Some("call_time_2")],
    filtered: Some(Filtered {
        text: "Once upon a time",
        usage: (12, 3),
    }),
    midstream_text: "The answer is forty",
    midstream_error: &["The server had an error while processing your request."],
    // `response.failed` after some text fails the reply like an `error` event.
    more_midstream_failures: &[MidstreamFailure {
        marker: "[failed]",
        behaviour: Behaviour::Failed,
        error: &["The model failed to generate a response."],
    }],
    continuation: Some(Continuation {
        rest: "-two, as always.",
        usage: (64, 4),
        request: ContinuationRequest::Instruction,
    }),
    retry_after: Duration::from_secs(1),
    // `Retry-After: 7`, beyond the 5 s this server waits: failed at once.
    rate_limit_failure: Some(RateLimitFailure {
        marker: "[rate-limit]",
        behaviour: Behaviour::RateLimited,
        error: &["Rate limit reached for gpt-5-mini"],
        requests: 1,
    }),
    unauthorized_error: &["401", "Incorrect API key provided"],
};

#[tokio::test(flavor = "multi_thread")]
async fn responses_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
