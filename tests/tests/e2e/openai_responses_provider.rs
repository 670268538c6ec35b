//! The OpenAI Responses API provider against a fake `/v1/responses` server that
//! replays the documented typed event sequence: what Chorus sends (`stream`,
//! `store: false`, `instructions` from the system prompt, `input` items), and what it
//! makes of normal replies, `error` and `response.failed` events mid-stream, and
//! rate limits.

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::{delta_text, expect_json};
use chorus_tests::fake_openai_responses::{
    Behaviour, CONTINUATION_CHUNKS, CONTINUATION_USAGE, FAILED_MESSAGE, MIDSTREAM_CHUNKS,
    MIDSTREAM_ERROR_MESSAGE, NORMAL_CHUNKS, NORMAL_USAGE, RATE_LIMIT_MESSAGE, RecordedRequest,
};
use chorus_tests::provider_checks::{
    Expected, ExpectedCall, ensure_exact_reply, run_shared_checks,
};
use chorus_tests::{FakeOpenAiResponses, ProviderCase, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;
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
    let mut t = ProviderCase::without_conversation(fake, config, "oair").await?;
    let resp = t
        .client
        .request(Method::POST, "/api/conversations")
        .json(&json!({"title": "e2e", "model": MODEL, "system_prompt": SYSTEM_PROMPT}))
        .send()
        .await?;
    let conv = expect_json(resp, StatusCode::CREATED, "create a conversation").await?;
    t.conversation = conv["id"]
        .as_str()
        .context("the conversation has no id")?
        .to_string();
    Ok(t)
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

fn roles_and_contents(messages: &[(String, String)]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_normal_reply_with_exact_usage() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t.send_to_finished("Say hello").await?;
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("complete"));
    let reply = NORMAL_CHUNKS.concat();
    let run = t.run_ended(&sent.run_id).await?;
    ensure_exact_reply(&events, &run, &reply, NORMAL_USAGE)?;

    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    ensure!(
        roles_and_contents(&requests[0].messages()) == [("user", "Say hello")],
        "first request input: {}",
        requests[0].body["input"]
    );

    // The second turn carries the first one as context.
    let second = t.client.send_message(&t.conversation, "And again").await?;
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
        "second request input: {}",
        requests[1].body["input"]
    );
    Ok(())
}

/// A mid-stream failure (`error` or `response.failed`) interrupts the run with its
/// partial text and the provider's message; `continue` completes it.
async fn failure_keeps_partial_text_and_continues(marker: &str, message: &str) -> Result<()> {
    let t = setup().await?;
    let question = format!("{marker} what is the answer?");
    let (sent, events) = t.send_to_finished(&question).await?;
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
    ensure!(
        s(&run, "error").contains(message),
        "the run's error does not carry the provider's message: {}",
        run["error"]
    );

    let continuation = t.client.continue_run(&sent.run_id).await?;
    let run2 = t.run_ended(&continuation).await?;
    let rest = CONTINUATION_CHUNKS.concat();
    ensure!(
        s(&run2, "status") == "complete"
            && s(&run2, "text") == rest
            && run2["prompt_tokens"] == CONTINUATION_USAGE.0
            && run2["completion_tokens"] == CONTINUATION_USAGE.1,
        "continuation run: {run2}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    let req = &requests[1];
    check_request_shape(req)?;
    ensure!(req.behaviour == Behaviour::Continuation);
    let messages = req.messages();
    let got = roles_and_contents(&messages);
    ensure!(
        got.len() == 3
            && got[0] == ("user", question.as_str())
            && got[1] == ("assistant", partial.as_str())
            && got[2].0 == "user"
            && !got[2].1.trim().is_empty()
            && got[2].1 != question,
        "the continuation request is not [question, partial, instruction]: {got:?}"
    );

    let messages = t.client.messages(&t.conversation).await?;
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == format!("{partial}{rest}"),
        "the message after continue is {content:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_error_event_interrupts_and_continue_completes() -> Result<()> {
    failure_keeps_partial_text_and_continues("[midstream-error]", MIDSTREAM_ERROR_MESSAGE).await
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_failed_event_interrupts_and_continue_completes() -> Result<()> {
    failure_keeps_partial_text_and_continues("[failed]", FAILED_MESSAGE).await
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_rate_limit_fails_the_run() -> Result<()> {
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
            && error.contains(RATE_LIMIT_MESSAGE),
        "run: {run}"
    );
    ensure!(
        t.fake.requests().len() == 1,
        "a Retry-After beyond max_retry_wait_secs is not waited for"
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "oair",
    reply: "Hello from the responses fake.",
    usage: (31, 7),
    tool_calls: &[
        ExpectedCall {
            id: Some("call_weather_1"),
            name: "weather",
            arguments: r#"{"city": "Paris"}"#,
        },
        ExpectedCall {
            id: Some("call_time_2"),
            name: "time",
            arguments: r#"{"tz": "Europe/Paris"}"#,
        },
    ],
    filtered_text: Some("Once upon a time"),
    midstream_text: "The answer is forty",
    midstream_error: &["The server had an error while processing your request."],
    retry_after: Duration::from_secs(1),
    unauthorized_error: &["401", "Incorrect API key provided"],
};

#[tokio::test(flavor = "multi_thread")]
async fn responses_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
