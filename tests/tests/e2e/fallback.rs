//! Model aliases with fallback chains: a failure that may pass before the first token
//! (a provider nobody listens for, one that answers 503, one that stays silent) is
//! retried, then handed to the next model with a `fallback` event; a failure after
//! tokens never falls back.

use crate::{finished, s};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_openai::{MIDSTREAM_CHUNKS, NORMAL_CHUNKS};
use chorus_tests::server::free_port;
use chorus_tests::{
    FakeOpenAi, PASSWORD, Resume, ServerConfig, TestServer, logged_in_client, unique_name,
};
use std::time::Duration;

const ALIAS: &str = r#"
[[aliases]]
name = "resilient"
models = ["dead/gpt-4o-mini", "live/gpt-4o-mini"]

[[aliases]]
name = "live-first"
models = ["live/gpt-4o-mini", "dead/gpt-4o-mini"]
"#;

fn live_model_info() -> toml::Value {
    let mut meta = toml::Table::new();
    meta.insert("context_window".into(), toml::Value::Integer(128_000));
    meta.insert("prompt_price".into(), toml::Value::Float(0.15));
    meta.insert("completion_price".into(), toml::Value::Float(0.6));
    let mut info = toml::Table::new();
    info.insert("gpt-4o-mini".into(), toml::Value::Table(meta));
    toml::Value::Table(info)
}

async fn setup() -> Result<(FakeOpenAi, TestServer)> {
    let fake = FakeOpenAi::start().await?;
    // A port with nothing listening: every attempt is a connect error.
    let dead = format!("http://127.0.0.1:{}/v1", free_port()?);
    let server = TestServer::start(
        ServerConfig::new()
            .openai("dead", &dead, "sk-dead", &["gpt-4o-mini"])
            .provider_setting("dead", "max_retries", 1)
            .openai("live", &fake.base_url(), "sk-live", &["gpt-4o-mini"])
            .provider_setting("live", "model_info", live_model_info())
            .raw_toml(ALIAS)
            // The live model is priced and new accounts have no credits: these tests
            // are about fallbacks, not balances.
            .raw_toml("[quota]\nenabled = false\n"),
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
    let live = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == "live/gpt-4o-mini").cloned())
        .ok_or_else(|| anyhow::anyhow!("live model not listed: {models}"))?;
    ensure!(
        live["context_window"] == 128_000
            && live["prompt_price"] == 0.15
            && live["completion_price"] == 0.6,
        "configured model facts are listed: {live}"
    );

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

    // Provider health: admins see the dead provider's failures (first try + one retry)
    // and the live one's success; other accounts get 403.
    let forbidden = client
        .request(reqwest::Method::GET, "/api/providers")
        .send()
        .await?;
    ensure!(
        forbidden.status() == 403,
        "non-admin got {}",
        forbidden.status()
    );
    let admin_name = unique_name("admin");
    server
        .cli(
            &["user", "create", &admin_name, "--admin", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await?;
    let admin = server.client();
    admin.login(&admin_name, PASSWORD).await?;
    let providers: serde_json::Value = admin
        .request(reqwest::Method::GET, "/api/providers")
        .send()
        .await?
        .json()
        .await?;
    let health = |id: &str| {
        providers["providers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["id"] == id))
            .map(|p| p["health"].clone())
            .unwrap_or_default()
    };
    let (dead, live) = (health("dead"), health("live"));
    ensure!(
        dead["attempts"] == 2 && dead["failures"] == 2 && dead["error_rate"] == 1.0,
        "{providers}"
    );
    ensure!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("request failed")),
        "{dead}"
    );
    ensure!(live["attempts"] == 1 && live["failures"] == 0, "{live}");
    ensure!(live["first_token_p50_ms"].is_u64(), "{live}");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_a_first_token_in_time_falls_back() -> Result<()> {
    // A server that accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hole_url = format!("http://{}/v1", hole.local_addr()?);
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let fake = FakeOpenAi::start().await?;
    let server = TestServer::start(
        ServerConfig::new()
            .openai("hang", &hole_url, "sk-hang", &["gpt-4o-mini"])
            .provider_setting("hang", "max_retries", 0)
            .provider_setting("hang", "first_token_timeout_secs", 1)
            .openai("live", &fake.base_url(), "sk-live", &["gpt-4o-mini"])
            .raw_toml(
                r#"
[[aliases]]
name = "patient"
models = ["hang/gpt-4o-mini", "live/gpt-4o-mini"]
"#,
            ),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("ft")).await?;
    let conversation = client.create_conversation(Some("patient")).await?;
    let sent = client.send_message(&conversation, "hello").await?;
    let events = client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    let fallback = events
        .iter()
        .find(|e| e.kind == "fallback")
        .ok_or_else(|| anyhow::anyhow!("no fallback event: {events:?}"))?;
    ensure!(
        fallback.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("first token")),
        "{fallback:?}"
    );
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(delta_text(&events) == NORMAL_CHUNKS.concat());
    holder.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_falls_back_to_the_next_provider() -> Result<()> {
    // The first model's server is overloaded (HTTP 503); the second, another vendor, replies.
    let busy = FakeOpenAi::start().await?;
    let claude = chorus_tests::FakeAnthropic::start().await?;
    let server = TestServer::start(
        ServerConfig::new()
            .openai("busy", &busy.base_url(), "sk-busy", &["gpt-4o-mini"])
            .provider_setting("busy", "max_retries", 1)
            .anthropic(
                "claude",
                &claude.base_url(),
                "sk-ant-claude",
                &["claude-sonnet-4-5"],
            )
            .raw_toml(
                r#"
[[aliases]]
name = "sturdy"
models = ["busy/gpt-4o-mini", "claude/claude-sonnet-4-5"]
"#,
            ),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("fb503")).await?;
    let conversation = client.create_conversation(Some("sturdy")).await?;
    let sent = client
        .send_message(&conversation, "[unavailable] hello")
        .await?;
    let events = client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    let fallbacks: Vec<_> = events.iter().filter(|e| e.kind == "fallback").collect();
    ensure!(fallbacks.len() == 1, "one fallback event: {events:?}");
    let reason = fallbacks[0].data["reason"].as_str().unwrap_or_default();
    ensure!(
        fallbacks[0].data["from"] == "busy/gpt-4o-mini"
            && fallbacks[0].data["to"] == "claude/claude-sonnet-4-5"
            && reason.contains("503")
            && reason.contains("overloaded"),
        "{:?}",
        fallbacks[0]
    );
    let reply = chorus_tests::fake_anthropic::NORMAL_CHUNKS.concat();
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(
        delta_text(&events) == reply,
        "deltas: {:?}",
        delta_text(&events)
    );
    let run = client
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(
        s(&run, "status") == "complete" && s(&run, "text") == reply && run["error"].is_null(),
        "{run}"
    );
    // The 503 was retried once (max_retries = 1), then the next model answered once.
    let busy_requests = busy.requests();
    ensure!(
        busy_requests.len() == 2
            && busy_requests
                .iter()
                .all(|r| r.behaviour == chorus_tests::fake_openai::Behaviour::Unavailable),
        "{} requests to the busy provider",
        busy_requests.len()
    );
    ensure!(claude.requests().len() == 1, "the fallback answered once");
    Ok(())
}
