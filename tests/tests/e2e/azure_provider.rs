//! Azure OpenAI (`kind = "azure"`) against a fake resource that accepts only the
//! deployment URL, the configured `api-version` and the `api-key` header: a normal
//! reply with exact usage (through Azure's `prompt_filter_results` chunk), a prompt
//! refused by the content filter (the run fails with a message saying so), and a
//! completion cut by the filter (the run completes with reason `content_filter`).

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_azure::{
    Behaviour, FILTERED_CHUNKS, FILTERED_USAGE, NORMAL_CHUNKS, NORMAL_USAGE, PROMPT_FILTER_MESSAGE,
    RecordedRequest,
};
use chorus_tests::provider_checks::{
    Expected, ExpectedCall, ensure_exact_reply, run_shared_checks,
};
use chorus_tests::{FakeAzure, ProviderCase, Resume, ServerConfig};
use std::time::Duration;

const API_KEY: &str = "az-e2e-fake-key-5678";
const API_VERSION: &str = "2024-10-21";
const DEPLOYMENT: &str = "gpt4o-prod";
const MODEL: &str = "azure/gpt4o-prod";

type Setup = ProviderCase<FakeAzure>;

async fn setup() -> Result<Setup> {
    let fake = FakeAzure::start(&[DEPLOYMENT], API_VERSION, API_KEY).await?;
    let config = ServerConfig::new().azure(
        "azure",
        &fake.base_url(),
        API_KEY,
        API_VERSION,
        &[DEPLOYMENT],
    );
    ProviderCase::start(fake, config, "azure", MODEL).await
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.behaviour != Behaviour::Rejected,
        "the fake rejected the request (deployment {:?}, api-version {:?}, api-key {:?})",
        req.deployment,
        req.api_version,
        req.api_key()
    );
    ensure!(
        req.deployment == DEPLOYMENT,
        "deployment {:?}",
        req.deployment
    );
    ensure!(
        req.api_version.as_deref() == Some(API_VERSION),
        "api-version {:?}",
        req.api_version
    );
    ensure!(
        req.api_key() == Some(API_KEY),
        "api-key {:?}",
        req.api_key()
    );
    ensure!(
        req.authorization().is_none(),
        "Azure key auth sends no Authorization header, got {:?}",
        req.authorization()
    );
    ensure!(req.body["stream"] == true, "stream: {}", req.body["stream"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_normal_reply_with_exact_usage() -> Result<()> {
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
    let run = t.run_ended(&sent.run_id).await?;
    ensure_exact_reply(&events, &run, &reply, NORMAL_USAGE)?;
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    ensure!(
        requests[0].body["messages"][0]["content"] == "Say hello",
        "messages: {}",
        requests[0].body["messages"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_prompt_blocked_by_content_filter_fails_the_run() -> Result<()> {
    let t = setup().await?;
    let sent = t
        .client
        .send_message(
            &t.conversation,
            "[blocked-prompt] something the filter hates",
        )
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
            && error.contains("blocked by Azure's content filter")
            && error.contains(PROMPT_FILTER_MESSAGE)
            && error.contains("violence"),
        "run: {run}"
    );
    // A refusal is not retried: it would be refused again.
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    ensure!(requests[0].behaviour == Behaviour::BlockedPrompt);
    let messages = t.client.messages(&t.conversation).await?;
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content").is_empty() && s(assistant, "run_status") == "failed",
        "assistant message: {assistant}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_completion_cut_by_content_filter_completes_with_content_filter() -> Result<()> {
    let t = setup().await?;
    let (sent, events) = t
        .send_to_finished("[filtered-completion] tell me a story")
        .await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "content_filter",
        "a filtered completion must end the run complete with reason content_filter; finished with {}",
        end.data
    );
    let partial = FILTERED_CHUNKS.concat();
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
            && run["prompt_tokens"] == FILTERED_USAGE.0
            && run["completion_tokens"] == FILTERED_USAGE.1,
        "run: {run}"
    );
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    check_request_shape(&requests[0])?;
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "azure",
    reply: "Hello from Azure.",
    usage: (19, 4),
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
    unauthorized_error: &["401", "Access denied due to invalid subscription key"],
};

#[tokio::test(flavor = "multi_thread")]
async fn azure_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
