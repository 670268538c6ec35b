//! The Ollama provider against a fake Ollama that speaks the documented NDJSON chat
//! stream (each line delivered in two pieces) and model list: the shared provider
//! checks (`provider_checks.rs`) with this provider's table behind an authenticating
//! proxy, and what only Ollama has: model discovery at start, a stop then a native
//! continuation (the partial text as a final assistant message) that completes the
//! message exactly, and a start without Ollama running.

use crate::{assert_consecutive, assert_proper_prefix, finished, only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::{delta_text, expect_json};
use chorus_tests::fake_ollama::{
    Behaviour, MODELS, NORMAL_CHUNKS, RecordedRequest, prompt_tokens, slow_script,
};
use chorus_tests::provider_checks::{Expected, run_shared_checks};
use chorus_tests::server::free_port;
use chorus_tests::{
    ApiClient, FakeOllama, ProviderCase, Resume, ServerConfig, TestServer, logged_in_client,
    unique_name,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

const MODEL: &str = "ollama/llama3.2:latest";

/// `GET /api/models`: the ids it lists and the default model.
async fn listed_models(client: &ApiClient) -> Result<(Vec<Value>, String)> {
    let resp = client.request(Method::GET, "/api/models").send().await?;
    let body = expect_json(resp, StatusCode::OK, "GET /api/models").await?;
    let models = body["models"].as_array().cloned().unwrap_or_default();
    Ok((models, s(&body, "default_model").to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_discovers_models_and_answers_on_them() -> Result<()> {
    let fake = FakeOllama::start().await?;
    let server =
        TestServer::start(ServerConfig::new().ollama("ollama", &fake.base_url(), &[])).await?;
    let client = logged_in_client(&server, &unique_name("oll")).await?;
    ensure!(fake.tags_calls() >= 1, "the server never asked /api/tags");

    let (models, default_model) = listed_models(&client).await?;
    let ids: Vec<&str> = models.iter().map(|m| s(m, "id")).collect();
    for name in MODELS {
        let id = format!("ollama/{name}");
        let info = models
            .iter()
            .find(|m| s(m, "id") == id)
            .with_context(|| format!("{id} is not listed; models: {ids:?}"))?;
        ensure!(
            s(info, "provider") == "ollama"
                && s(info, "model") == *name
                && s(info, "kind") == "ollama",
            "model info: {info}"
        );
    }
    ensure!(
        ids.len() == MODELS.len(),
        "only the discovered models are listed: {ids:?}"
    );
    ensure!(default_model == MODEL, "default model {default_model:?}");

    // A discovered model answers (the reply itself is a shared check).
    let conversation = client.create_conversation(Some(MODEL)).await?;
    let sent = client.send_message(&conversation, "Say hello").await?;
    let run = client
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(
        s(&run, "status") == "complete" && s(&run, "text") == NORMAL_CHUNKS.concat(),
        "run: {run}"
    );
    let requests = fake.requests();
    ensure!(
        requests.len() == 1 && requests[0].behaviour == Behaviour::Normal,
        "{requests:?}"
    );
    check_request_shape(&requests[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_continuation_after_stop_prefills_and_completes_exactly() -> Result<()> {
    let fake = FakeOllama::start().await?;
    let server =
        TestServer::start(ServerConfig::new().ollama("ollama", &fake.base_url(), &[])).await?;
    let client = logged_in_client(&server, &unique_name("oll")).await?;
    let conversation = client.create_conversation(Some(MODEL)).await?;

    let question = "[slow] take your time";
    let sent = client.send_message(&conversation, question).await?;
    let mut stream = client.events(&sent.run_id, Resume::Start).await?;
    let mut events = stream.take(4).await?;
    ensure!(
        events.iter().filter(|e| e.kind == "delta").count() == 3,
        "first events: {events:?}"
    );
    client.stop(&sent.run_id).await?;
    events.extend(stream.to_finished().await?);
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("stopped"));

    let full = slow_script();
    let partial = delta_text(&events);
    assert_proper_prefix(&partial, &full)?;
    let run = client
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(
        s(&run, "status") == "stopped" && s(&run, "text") == partial,
        "run: {run}"
    );

    // Continue: Ollama gets the partial text as the final assistant message (its
    // native prefill), with no instruction after it.
    let continuation = client.continue_run(&sent.run_id).await?;
    let run2 = client
        .wait_run_ended(&continuation, Duration::from_secs(15))
        .await?;
    let requests = fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    let req = &requests[1];
    ensure!(
        req.behaviour == Behaviour::Continuation,
        "the continuation request was treated as {:?}",
        req.behaviour
    );
    let expected = [
        ("user".to_string(), question.to_string()),
        ("assistant".to_string(), partial.clone()),
    ];
    ensure!(
        req.messages() == expected,
        "the continuation request is not [question, partial]: {:?}",
        req.messages()
    );
    let rest = &full[partial.len()..];
    ensure!(
        s(&run2, "status") == "complete"
            && s(&run2, "text") == rest
            && s(&run2, "finish_reason") == "stop"
            && run2["prompt_tokens"] == prompt_tokens(&req.body)
            && run2["completion_tokens"] == rest.split_inclusive(' ').count() as u64,
        "continuation run: {run2}"
    );

    // The message is the partial text extended, not repeated: the whole script.
    let messages = client.messages(&conversation).await?;
    ensure!(messages.len() == 2, "messages: {messages:?}");
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == full,
        "the message after continue is {content:?}, expected {full:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_unreachable_at_start_does_not_stop_chorus() -> Result<()> {
    // Nothing listens there: Chorus must start anyway, with the other providers.
    let nowhere = format!("http://127.0.0.1:{}", free_port()?);
    let server = TestServer::start(
        ServerConfig::new()
            .ollama("ollama", &nowhere, &[])
            .scripted("scripted", "Hi.", 200.0),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("oll")).await?;
    let (models, default_model) = listed_models(&client).await?;
    let ids: Vec<&str> = models.iter().map(|m| s(m, "id")).collect();
    ensure!(ids == ["scripted/demo"], "models: {ids:?}");
    ensure!(
        default_model == "scripted/demo",
        "default {default_model:?}"
    );
    let log = server.log();
    ensure!(
        log.contains("cannot list the provider's models"),
        "no warning about the unreachable Ollama in the log:\n{log}"
    );
    Ok(())
}

fn check_request_shape(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.body["model"] == "llama3.2:latest" && req.body["stream"] == true,
        "request body: {}",
        req.body
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "ollama",
    request_shape: check_request_shape,
    system_prompt: None,
    model_role: "assistant",
    reply: "Hello from the fake llama.",
    usage: (26, 6),
    tool_call_ids: [None, None],
    filtered: None,
    midstream_text: "The answer is forty",
    midstream_error: &["an error was encountered while running the model"],
    more_midstream_failures: &[],
    continuation: None,
    retry_after: Duration::from_secs(1),
    rate_limit_failure: None,
    unauthorized_error: &["401", "unauthorized"],
};

#[tokio::test(flavor = "multi_thread")]
async fn ollama_passes_the_shared_provider_checks() -> Result<()> {
    // Behind an authenticating proxy, with a key: the 401 names it.
    let fake = FakeOllama::start().await?;
    let config = ServerConfig::new()
        .ollama("ollama", &fake.base_url(), &["llama3.2:latest"])
        .provider_setting("ollama", "api_key", "ollama-proxy-key");
    let t = ProviderCase::without_conversation(fake, config, "oll").await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
