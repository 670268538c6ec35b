//! The OpenAI provider against a fake Chat Completions server that speaks the
//! documented streaming format: what Chorus sends, and what it makes of normal
//! replies, mid-stream errors, rate limits and a stop during a slow reply.

use crate::{assert_consecutive, assert_proper_prefix, finished, only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_openai::{
    Behaviour, CONTINUATION_CHUNKS, CONTINUATION_USAGE, MIDSTREAM_CHUNKS, MIDSTREAM_ERROR_MESSAGE,
    NORMAL_CHUNKS, NORMAL_USAGE, RATE_LIMIT_MESSAGE, RecordedRequest, slow_chunks,
};
use chorus_tests::provider_checks::{
    Expected, ExpectedCall, ensure_exact_reply, run_shared_checks,
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

fn roles_and_contents(messages: &[(String, String)]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect()
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
async fn normal_reply_usage_and_history() -> Result<()> {
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
        "first request messages: {:?}",
        requests[0].messages()
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
        "second request messages: {:?}",
        requests[1].messages()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn midstream_error_keeps_partial_text_and_continues() -> Result<()> {
    let t = setup().await?;
    let question = "[midstream-error] what is the answer?";
    let (sent, events) = t.send_to_finished(question).await?;
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
        s(&run, "error").contains(MIDSTREAM_ERROR_MESSAGE),
        "the run's error does not carry the provider's message: {}",
        run["error"]
    );
    let messages = t.client.messages(&t.conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == partial);

    // Continue: the provider is asked to go on from the partial text.
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
            && got[0] == ("user", question)
            && got[1] == ("assistant", partial.as_str())
            && got[2].0 == "user"
            && !got[2].1.trim().is_empty()
            && got[2].1 != question,
        "the continuation request is not [question, partial, instruction]: {got:?}"
    );

    // The message is the partial text extended, not repeated.
    let messages = t.client.messages(&t.conversation).await?;
    ensure!(messages.len() == 2, "messages: {messages:?}");
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == format!("{partial}{rest}"),
        "the message after continue is {content:?}"
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
async fn a_rejected_key_names_the_provider_and_the_setting() -> Result<()> {
    let t = setup().await?;
    let sent = t
        .client
        .send_message(&t.conversation, "[unauthorized] hi")
        .await?;
    let events = t
        .client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(finished(&events)?.status() == Some("failed"));
    let run = t
        .client
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    let error = s(&run, "error");
    ensure!(
        error.contains("provider `openai`")
            && error.contains("api_key")
            && error.contains("401")
            && error.contains("Incorrect API key provided"),
        "run: {run}"
    );
    ensure!(
        t.fake.requests().len() == 1,
        "an auth failure is not retried"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_fails_the_run() -> Result<()> {
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
    let messages = t.client.messages(&t.conversation).await?;
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content").is_empty() && s(assistant, "run_status") == "failed",
        "assistant message: {assistant}"
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
    reply: "Hello from the fake model.",
    usage: (23, 6),
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
async fn openai_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
