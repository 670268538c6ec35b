//! The OpenAI provider against a fake Chat Completions server that speaks the
//! documented streaming format: the shared provider checks (`provider_checks.rs`) with
//! this provider's table and request shape, and what only this provider has: usage
//! estimated when the server sends none, and a stop during a slow reply.

use crate::{assert_consecutive, assert_proper_prefix, finished, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_openai::{Behaviour, RecordedRequest, slow_chunks};
use chorus_tests::provider_checks::{
    Continuation, ContinuationRequest, Expected, Filtered, RateLimitFailure, run_shared_checks,
};
use chorus_tests::wait::until;
use chorus_tests::{FakeOpenAi, ProviderCase, Resume, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "sk-e2e-fake-key-1234";
const MODEL: &str = "openai/gpt-4o-mini";

type Setup = ProviderCase<FakeOpenAi>;

async fn setup() -> Result<Setup> {
    let fake = FakeOpenAi::start().await?;
    // The fake's `Retry-After: 7` exceeds the 5 s this server honours, so a rate limit
    // fails the run at once instead of retrying (retries are covered in fallback.rs).
    let config = ServerConfig::new()
        .openai("openai", &fake.base_url(), API_KEY, &["gpt-4o-mini"])
        .provider_setting("openai", "max_retry_wait_secs", 5);
    ProviderCase::start(fake, config, "oai", MODEL).await
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.authorization() == Some(&format!("Bearer {API_KEY}")),
        "Authorization was {:?}",
        req.authorization()
    );
    ensure!(
        req.body["model"] == "gpt-4o-mini",
        "model: {}",
        req.body["model"]
    );
    ensure!(req.body["stream"] == true, "stream: {}", req.body["stream"]);
    ensure!(
        req.body["stream_options"]["include_usage"] == true,
        "stream_options: {}",
        req.body["stream_options"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_usage_is_estimated_with_the_model_tokenizer() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t.send_to_finished("[no-usage] Hello, world!").await?;
    let usage = events
        .iter()
        .find(|e| e.kind == "usage")
        .ok_or_else(|| anyhow::anyhow!("no usage event: {events:?}"))?;
    ensure!(usage.data["estimated"] == true, "{usage:?}");
    // "Hello from the fake model." is 6 tokens for gpt-4o-mini's tokenizer (o200k_base);
    // the prompt is one user message: 3 + 9 (`[`, `no`, `-`, `usage`, `]`, ` Hello`, `,`,
    // ` world`, `!`) + 3 for the reply priming.
    ensure!(usage.data["completion_tokens"] == 6, "{usage:?}");
    ensure!(usage.data["prompt_tokens"] == 15, "{usage:?}");
    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        run["completion_tokens"] == 6 && run["prompt_tokens"] == 15,
        "run: {run}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_during_a_slow_reply_hangs_up_on_the_provider() -> Result<()> {
    let t = setup().await?;
    let sent = t
        .client
        .send_message(&t.conversation, "[slow] take your time")
        .await?;
    let mut stream = t.client.events(&sent.run_id, Resume::Start).await?;
    let mut events = stream.take(4).await?;
    ensure!(
        events.iter().filter(|e| e.kind == "delta").count() == 3,
        "first events: {events:?}"
    );
    t.client.stop(&sent.run_id).await?;
    events.extend(stream.to_finished().await?);
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("stopped"));

    let full = slow_chunks().concat();
    let text = delta_text(&events);
    assert_proper_prefix(&text, &full)?;
    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "stopped" && s(&run, "text") == text,
        "run: {run}"
    );
    // Stopping ends the provider request too, instead of paying for the rest.
    until(
        "the provider's connection to close",
        Duration::from_secs(10),
        || async { Ok(t.fake.requests()[0].client_hung_up().then_some(())) },
    )
    .await?;
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "openai",
    request_shape: check_request_shape,
    system_prompt: None,
    model_role: "assistant",
    reply: "Hello from the fake model.",
    usage: (23, 6),
    tool_call_ids: [Some("call_weather_1"), Some("call_time_2")],
    filtered: Some(Filtered {
        text: "Once upon a time",
        usage: (12, 3),
    }),
    midstream_text: "The answer is forty",
    midstream_error: &["The server had an error while processing your request."],
    more_midstream_failures: &[],
    continuation: Some(Continuation {
        rest: "-two, as always.",
        usage: (57, 3),
        request: ContinuationRequest::Instruction,
    }),
    retry_after: Duration::from_secs(1),
    // `Retry-After: 7`, beyond the 5 s this server waits: failed at once.
    rate_limit_failure: Some(RateLimitFailure {
        marker: "[rate-limit]",
        behaviour: Behaviour::RateLimited,
        error: &["Rate limit reached for gpt-4o-mini"],
        requests: 1,
    }),
    unauthorized_error: &["401", "Incorrect API key provided"],
};

#[tokio::test(flavor = "multi_thread")]
async fn openai_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
