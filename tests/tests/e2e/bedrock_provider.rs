//! AWS Bedrock (`kind = "bedrock"`) against a fake runtime that verifies every
//! request's SigV4 signature (recomputed with `aws-sigv4` from its own copy of the
//! credentials) and answers in binary event-stream frames: a normal reply with exact
//! usage, a throttled request (retried once, then failed with AWS's message), a wrong
//! secret key (failed with the signature error), and a mid-stream
//! `modelStreamErrorException` (interrupted, then continued exactly).

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_bedrock::{
    Behaviour, CONTINUATION_CHUNKS, CONTINUATION_USAGE, MIDSTREAM_CHUNKS, MIDSTREAM_ERROR_MESSAGE,
    MIDSTREAM_ERROR_TYPE, NORMAL_CHUNKS, NORMAL_USAGE, RecordedRequest, SIGNATURE_MESSAGE,
    THROTTLE_MESSAGE,
};
use chorus_tests::provider_checks::{Expected, ExpectedCall, run_shared_checks};
use chorus_tests::{FakeBedrock, ProviderCase, ServerConfig};
use std::time::Duration;

const ACCESS_KEY_ID: &str = "AKIAFAKEE2E000000001";
const SECRET_KEY: &str = "fakeE2eSecret/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-central-1";
const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";

type Setup = ProviderCase<FakeBedrock>;

async fn setup_with(secret_key: &str, max_retries: i64) -> Result<Setup> {
    let fake = FakeBedrock::start(ACCESS_KEY_ID, SECRET_KEY, REGION).await?;
    let config = ServerConfig::new()
        .bedrock(
            "bedrock",
            &fake.base_url(),
            REGION,
            ACCESS_KEY_ID,
            secret_key,
            &[MODEL_ID],
        )
        .provider_setting("bedrock", "max_retries", max_retries);
    ProviderCase::start(fake, config, "bedrock", MODEL).await
}

fn check_signed(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.behaviour != Behaviour::Rejected,
        "the fake rejected the request: {:?}",
        req.rejection
    );
    ensure!(req.model == MODEL_ID, "model {:?}", req.model);
    ensure!(
        req.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
        "path {:?}",
        req.path
    );
    let auth = req.header("authorization").unwrap_or_default();
    ensure!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"))
            && auth.contains(&format!("/{REGION}/bedrock/aws4_request")),
        "authorization {auth:?}"
    );
    ensure!(req.header("x-amz-date").is_some(), "no x-amz-date");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_normal_reply_with_exact_usage() -> Result<()> {
    let t = setup_with(SECRET_KEY, 2).await?;
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
    let prompt_tokens = NORMAL_USAGE.0 + NORMAL_USAGE.2;
    let usage = events
        .iter()
        .find(|e| e.kind == "usage")
        .context("no usage event")?;
    ensure!(
        usage.data["prompt_tokens"] == prompt_tokens
            && usage.data["completion_tokens"] == NORMAL_USAGE.1
            && usage.data["estimated"] == false,
        "usage event: {}",
        usage.data
    );
    let run = t.run_ended(&sent.run_id).await?;
    ensure!(
        s(&run, "status") == "complete"
            && s(&run, "text") == reply
            && run["prompt_tokens"] == prompt_tokens
            && run["completion_tokens"] == NORMAL_USAGE.1
            && run["error"].is_null(),
        "run: {run}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_signed(&requests[0])?;
    ensure!(
        requests[0].messages() == [("user".to_string(), "Say hello".to_string())],
        "messages: {:?}",
        requests[0].messages()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_throttling_is_retried_then_fails_with_the_message() -> Result<()> {
    let t = setup_with(SECRET_KEY, 1).await?;
    let (sent, events) = t.send_to_finished("[throttle] hi").await?;
    let end = finished(&events)?;
    ensure!(end.status() == Some("failed"), "finished with {}", end.data);
    let run = t.run_ended(&sent.run_id).await?;
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "failed"
            && s(&run, "text").is_empty()
            && error.contains("429")
            && error.contains("ThrottlingException")
            && error.contains(THROTTLE_MESSAGE),
        "run: {run}"
    );
    // max_retries = 1: the first attempt and one retry, both signed afresh.
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    for req in &requests {
        check_signed(req)?;
        ensure!(req.behaviour == Behaviour::Throttled);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_wrong_secret_fails_with_the_signature_error() -> Result<()> {
    let t = setup_with("not-the-right-secret-key", 2).await?;
    let (sent, events) = t.send_to_finished("Say hello").await?;
    let end = finished(&events)?;
    ensure!(end.status() == Some("failed"), "finished with {}", end.data);
    let run = t.run_ended(&sent.run_id).await?;
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "failed"
            && error.contains("403")
            && error.contains("InvalidSignatureException")
            && error.contains(SIGNATURE_MESSAGE),
        "run: {run}"
    );
    ensure!(
        error.to_lowercase().contains("auth"),
        "the error does not say it is an authentication problem: {error}"
    );
    // An auth error is not retried.
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    ensure!(
        requests[0].behaviour == Behaviour::Rejected
            && requests[0]
                .rejection
                .as_deref()
                .is_some_and(|r| r.contains("InvalidSignatureException")),
        "rejection: {:?}",
        requests[0].rejection
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_midstream_error_is_interrupted_and_continues_exactly() -> Result<()> {
    let t = setup_with(SECRET_KEY, 2).await?;
    let question = "[stream-error] what is the answer?";
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
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "interrupted"
            && s(&run, "text") == partial
            && error.contains(MIDSTREAM_ERROR_TYPE)
            && error.contains(MIDSTREAM_ERROR_MESSAGE),
        "run: {run}"
    );

    let continuation = t.client.continue_run(&sent.run_id).await?;
    let run2 = t.run_ended(&continuation).await?;
    let rest = CONTINUATION_CHUNKS.concat();
    ensure!(
        s(&run2, "status") == "complete"
            && s(&run2, "text") == rest
            && s(&run2, "finish_reason") == "stop"
            && run2["prompt_tokens"] == CONTINUATION_USAGE.0
            && run2["completion_tokens"] == CONTINUATION_USAGE.1,
        "continuation run: {run2}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    let req = &requests[1];
    check_signed(req)?;
    ensure!(req.behaviour == Behaviour::Continuation);
    // The explicit continuation: [question, partial as assistant, instruction as user].
    let sent_messages = req.messages();
    ensure!(
        sent_messages.len() == 3
            && sent_messages[0] == ("user".to_string(), question.to_string())
            && sent_messages[1] == ("assistant".to_string(), partial.clone())
            && sent_messages[2].0 == "user"
            && sent_messages[2].1.contains("Do not repeat"),
        "continuation messages: {sent_messages:?}"
    );
    let messages = t.client.messages(&t.conversation).await?;
    ensure!(messages.len() == 2, "messages: {messages:?}");
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == format!("{partial}{rest}"),
        "the message after continue is {content:?}"
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "bedrock",
    reply: "Hello from fake Bedrock.",
    usage: (24, 5),
    tool_calls: &[
        ExpectedCall {
            id: Some("tooluse_weather_A1"),
            name: "weather",
            arguments: r#"{"city": "Paris"}"#,
        },
        ExpectedCall {
            id: Some("tooluse_time_B2"),
            name: "time",
            arguments: r#"{"tz": "Europe/Paris"}"#,
        },
    ],
    filtered_text: Some("Here is how one would"),
    midstream_text: "The answer is:",
    midstream_error: &[
        "modelStreamErrorException",
        "The model stream was interrupted.",
    ],
    retry_after: Duration::from_secs(1),
    unauthorized_error: &[
        "403",
        "UnrecognizedClientException",
        "security token included in the request is invalid",
    ],
};

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup_with(SECRET_KEY, 2).await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
