//! Azure OpenAI (`kind = "azure"`) against a fake resource that accepts only the
//! deployment URL, the configured `api-version` and the `api-key` header: the shared
//! provider checks (`provider_checks.rs`) with this provider's table and request shape
//! (a plain reply through Azure's `prompt_filter_results` chunk, a completion cut by
//! the filter), and what only Azure has: a prompt refused by the content filter (the
//! run fails with a message saying so).

use crate::{assert_consecutive, finished, only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_azure::{
    Behaviour, PROMPT_FILTER_MESSAGE, RecordedRequest, api_version, deployment,
};
use chorus_tests::provider_checks::{Expected, Filtered, run_shared_checks};
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
    let deployment = deployment(&req.path);
    let api_version = api_version(req.query.as_deref());
    ensure!(
        req.behaviour != Behaviour::Rejected,
        "the fake rejected the request (deployment {deployment:?}, api-version {api_version:?}, api-key {:?}): {:?}",
        req.header("api-key"),
        req.rejection
    );
    ensure!(deployment == Some(DEPLOYMENT), "deployment {deployment:?}");
    ensure!(
        api_version == Some(API_VERSION),
        "api-version {api_version:?}"
    );
    ensure!(
        req.header("api-key") == Some(API_KEY),
        "api-key {:?}",
        req.header("api-key")
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
            // Run errors are shown to users with every URL masked.
            && error.contains(&PROMPT_FILTER_MESSAGE.replace("https://go.microsoft.com/fwlink/?linkid=2198766", "<url>"))
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

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "azure",
    request_shape: check_request_shape,
    system_prompt: None,
    model_role: "assistant",
    // Through Azure's first chunk, with empty `choices` and `prompt_filter_results`.
    reply: "Hello from Azure.",
    usage: (19, 4),
    tool_call_ids: [Some("call_weather_1"), Some("call_time_2")],
    // A completion cut by the filter completes with reason content_filter.
    filtered: Some(Filtered {
        text: "Once upon a time",
        usage: (12, 3),
    }),
    midstream_text: "The answer is forty",
    midstream_error: &["The server had an error while processing your request."],
    more_midstream_failures: &[],
    continuation: None,
    retry_after: Duration::from_secs(1),
    rate_limit_failure: None,
    unauthorized_error: &["401", "Access denied due to invalid subscription key"],
};

#[tokio::test(flavor = "multi_thread")]
async fn azure_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup().await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
