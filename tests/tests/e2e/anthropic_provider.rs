//! The Anthropic provider against a fake Messages API server that speaks the documented
//! streaming format (named events, pings, content blocks): what Chorus sends (headers,
//! top-level system prompt, alternating turns, a trimmed assistant prefill), and what it
//! makes of normal replies, thinking, a mid-stream overload and a rate limit.

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::{delta_text, expect_json};
use chorus_tests::fake_anthropic::{
    Behaviour, CONTINUATION_USAGE, MIDSTREAM_CHUNKS, MIDSTREAM_ERROR_MESSAGE, MIDSTREAM_ERROR_TYPE,
    NORMAL_CHUNKS, NORMAL_USAGE, RATE_LIMIT_MESSAGE, RecordedRequest, THINKING_ANSWER,
    THINKING_CHUNKS, continuation_prefill,
};
use chorus_tests::provider_checks::{Expected, ExpectedCall, run_shared_checks};
use chorus_tests::{ApiClient, FakeAnthropic, ProviderCase, Resume, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;
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

/// `POST /api/conversations` on the Anthropic model, with an optional system prompt.
async fn conversation(client: &ApiClient, system_prompt: Option<&str>) -> Result<String> {
    let mut body = json!({"title": "e2e", "model": MODEL});
    if let Some(prompt) = system_prompt {
        body["system_prompt"] = json!(prompt);
    }
    let resp = client
        .request(Method::POST, "/api/conversations")
        .json(&body)
        .send()
        .await?;
    let conv = expect_json(resp, StatusCode::CREATED, "create a conversation").await?;
    Ok(s(&conv, "id").to_string())
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

#[tokio::test(flavor = "multi_thread")]
async fn normal_reply_usage_headers_and_history() -> Result<()> {
    let t = setup().await?;
    let conversation = conversation(&t.client, None).await?;
    let sent = t.client.send_message(&conversation, "Say hello").await?;
    let events = t
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("complete"));
    let reply = NORMAL_CHUNKS.concat();
    ensure!(
        delta_text(&events) == reply,
        "deltas: {:?}",
        delta_text(&events)
    );
    let usage: Vec<_> = events.iter().filter(|e| e.kind == "usage").collect();
    ensure!(usage.len() == 1, "usage events: {usage:?}");
    ensure!(
        usage[0].data["prompt_tokens"] == NORMAL_USAGE.prompt_tokens()
            && usage[0].data["completion_tokens"] == NORMAL_USAGE.output_tokens
            && usage[0].data["estimated"] == false,
        "usage event (prompt tokens include the cache's): {}",
        usage[0].data
    );

    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "complete"
            && s(&run, "text") == reply
            && s(&run, "finish_reason") == "stop"
            && run["prompt_tokens"] == NORMAL_USAGE.prompt_tokens()
            && run["completion_tokens"] == NORMAL_USAGE.output_tokens
            && run["error"].is_null(),
        "run: {run}"
    );

    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    ensure!(
        requests[0].body.get("system").is_none(),
        "a system prompt was sent without one: {}",
        requests[0].body
    );
    ensure!(
        roles_and_contents(&requests[0].messages()) == [("user", "Say hello")],
        "first request messages: {:?}",
        requests[0].messages()
    );

    // The second turn carries the first one as context.
    let second = t.client.send_message(&conversation, "And again").await?;
    let run2 = t.run_ended(&second.run_id).await?;
    ensure!(s(&run2, "status") == "complete", "{run2}");
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    check_request_shape(&requests[1])?;
    ensure!(
        roles_and_contents(&requests[1].messages())
            == [
                ("user", "Say hello"),
                ("assistant", reply.as_str()),
                ("user", "And again")
            ],
        "second request messages: {:?}",
        requests[1].messages()
    );
    ensure!(!requests[0].client_hung_up() && !requests[1].client_hung_up());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn system_prompt_goes_top_level_and_thinking_streams_as_reasoning() -> Result<()> {
    let t = setup().await?;
    let conversation = conversation(&t.client, Some(SYSTEM_PROMPT)).await?;
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

#[tokio::test(flavor = "multi_thread")]
async fn midstream_overload_keeps_partial_text_and_continues_with_a_prefill() -> Result<()> {
    let t = setup().await?;
    let conversation = conversation(&t.client, None).await?;
    let question = "[midstream-error] what is the answer?";
    let sent = t.client.send_message(&conversation, question).await?;
    let events = t
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    let partial = MIDSTREAM_CHUNKS.concat();
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("interrupted"),
        "finished with {}",
        end.data
    );
    ensure!(delta_text(&events) == partial);

    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "interrupted" && s(&run, "text") == partial,
        "run: {run}"
    );
    let error = s(&run, "error");
    ensure!(
        error.contains(MIDSTREAM_ERROR_TYPE) && error.contains(MIDSTREAM_ERROR_MESSAGE),
        "the run's error does not carry the provider's error: {}",
        run["error"]
    );
    let messages = t.client.messages(&conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == partial);

    // Continue: the partial text goes back as an assistant prefill, without the
    // trailing whitespace the API refuses.
    let continuation = t.client.continue_run(&sent.run_id).await?;
    let run2 = t.run_ended(&continuation).await?;
    // The model repeats the "\n\n" the prefill lost; Chorus drops it once.
    let rest = "Forty-two, as always.";
    ensure!(
        s(&run2, "status") == "complete"
            && s(&run2, "text") == rest
            && s(&run2, "finish_reason") == "stop"
            && run2["prompt_tokens"] == CONTINUATION_USAGE.prompt_tokens()
            && run2["completion_tokens"] == CONTINUATION_USAGE.output_tokens,
        "continuation run: {run2}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    let req = &requests[1];
    check_request_shape(req)?;
    ensure!(req.behaviour == Behaviour::Continuation);
    let prefill = continuation_prefill();
    ensure!(prefill == "The answer is:", "prefill: {prefill:?}");
    let sent_messages = req.messages();
    ensure!(
        roles_and_contents(&sent_messages) == [("user", question), ("assistant", &prefill)],
        "the continuation request is not [question, trimmed partial]: {sent_messages:?}"
    );

    // The message is the partial text extended, neither repeated nor doubled up.
    let messages = t.client.messages(&conversation).await?;
    ensure!(messages.len() == 2, "messages: {messages:?}");
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == "The answer is:\n\nForty-two, as always.",
        "the message after continue is {content:?}"
    );
    ensure!(content == format!("{partial}{rest}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_fails_the_run_with_the_message() -> Result<()> {
    let t = setup().await?;
    let conversation = conversation(&t.client, None).await?;
    let sent = t
        .client
        .send_message(&conversation, "[rate-limit] hi")
        .await?;
    let events = t
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
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
            && error.contains("rate_limit_error")
            && error.contains(RATE_LIMIT_MESSAGE),
        "run: {run}"
    );
    // The fake asked for an hour's wait, past any retry Chorus makes: one request only,
    // which also shows that `retry-after` was read (without it Chorus backs off and retries).
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    let messages = t.client.messages(&conversation).await?;
    let assistant = only_assistant(&messages).context("after a rate limit")?;
    ensure!(
        s(assistant, "content").is_empty() && s(assistant, "run_status") == "failed",
        "assistant message: {assistant}"
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "claude",
    reply: "Hello from the fake Claude.",
    usage: (25, 6),
    tool_calls: &[
        ExpectedCall {
            id: Some("toolu_01WeatherAAAA"),
            name: "weather",
            arguments: r#"{"city": "Paris"}"#,
        },
        ExpectedCall {
            id: Some("toolu_01TimeBBBBBB"),
            name: "time",
            arguments: r#"{"tz": "Europe/Paris"}"#,
        },
    ],
    filtered_text: Some("Here is how one would"),
    midstream_text: "The answer is:\n\n",
    midstream_error: &["overloaded_error", "Overloaded"],
    retry_after: Duration::from_secs(1),
    unauthorized_error: &["401", "authentication_error", "invalid x-api-key"],
};

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
