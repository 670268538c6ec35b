//! Model aliases with fallback chains: a failure that may pass before the first token
//! (here: a provider nobody listens for) is retried, then handed to the next model
//! with a `fallback` event; a failure after tokens never falls back.

use crate::{finished, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_openai::{MIDSTREAM_CHUNKS, NORMAL_CHUNKS};
use chorus_tests::server::free_port;
use chorus_tests::{FakeOpenAi, Resume, ServerConfig, TestServer, logged_in_client, unique_name};
use std::time::Duration;

const ALIAS: &str = r#"
[[aliases]]
name = "resilient"
models = ["dead/gpt-4o-mini", "live/gpt-4o-mini"]

[[aliases]]
name = "live-first"
models = ["live/gpt-4o-mini", "dead/gpt-4o-mini"]
"#;

async fn setup() -> Result<(FakeOpenAi, TestServer)> {
    let fake = FakeOpenAi::start().await?;
    // A port with nothing listening: every attempt is a connect error.
    let dead = format!("http://127.0.0.1:{}/v1", free_port()?);
    let server = TestServer::start(
        ServerConfig::new()
            .openai("dead", &dead, "sk-dead", &["gpt-4o-mini"])
            .provider_setting("dead", "max_retries", 1)
            .openai("live", &fake.base_url(), "sk-live", &["gpt-4o-mini"])
            .raw_toml(ALIAS),
    )
    .await?;
    Ok((fake, server))
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_fall_back_to_the_next_model() -> Result<()> {
    let (fake, server) = setup().await?;
    let client = logged_in_client(&server, &unique_name("fb")).await?;

    let models = client
        .request(reqwest::Method::GET, "/api/models")
        .send()
        .await?;
    let models: serde_json::Value = models.json().await?;
    let alias = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == "resilient").cloned())
        .ok_or_else(|| anyhow::anyhow!("the alias is not listed: {models}"))?;
    ensure!(alias["fallbacks"][1] == "live/gpt-4o-mini", "{alias}");

    let conversation = client.create_conversation(Some("resilient")).await?;
    let sent = client.send_message(&conversation, "hello").await?;
    let events = client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    let fallbacks: Vec<_> = events.iter().filter(|e| e.kind == "fallback").collect();
    ensure!(
        fallbacks.len() == 1,
        "expected one fallback event: {events:?}"
    );
    ensure!(
        fallbacks[0].data["from"] == "dead/gpt-4o-mini"
            && fallbacks[0].data["to"] == "live/gpt-4o-mini",
        "{:?}",
        fallbacks[0]
    );
    ensure!(
        fallbacks[0].data["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("request failed"),
        "the reason names the failure: {:?}",
        fallbacks[0]
    );
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(delta_text(&events) == NORMAL_CHUNKS.concat());
    ensure!(fake.requests().len() == 1, "the live model answered once");
    let run = client
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(
        s(&run, "status") == "complete" && s(&run, "text") == NORMAL_CHUNKS.concat(),
        "{run}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_after_tokens_never_fall_back() -> Result<()> {
    let (fake, server) = setup().await?;
    let client = logged_in_client(&server, &unique_name("fb")).await?;
    let conversation = client.create_conversation(Some("live-first")).await?;
    let sent = client
        .send_message(&conversation, "[midstream-error] go")
        .await?;
    let events = client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(!events.iter().any(|e| e.kind == "fallback"), "{events:?}");
    ensure!(finished(&events)?.status() == Some("interrupted"));
    ensure!(delta_text(&events) == MIDSTREAM_CHUNKS.concat());
    ensure!(
        fake.requests().len() == 1,
        "no second attempt after tokens streamed"
    );
    Ok(())
}
