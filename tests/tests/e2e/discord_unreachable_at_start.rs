//! A Discord that cannot be reached when `chorus serve` starts does not stop the
//! server: the web serves, `/readyz` says the Discord surface is down and why (200,
//! `degraded`), its start is retried with back-off, and once the API answers the bot
//! connects and replies.

use crate::discord_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::fake_discord_bot::{FakeDiscordBot, TOKEN};
use chorus_tests::tcp_forward::Forwarder;
use chorus_tests::{ServerConfig, TestServer, script, wait};
use serde_json::Value;

/// `/readyz`'s status code, body and the Discord surface's entry.
async fn readiness(server: &TestServer) -> Result<(u16, Value, Option<Value>)> {
    let response = server.client().get("/readyz").await?;
    let code = response.status().as_u16();
    let body: Value = response.json().await?;
    let discord = body["surfaces"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["surface"] == "discord"))
        .cloned();
    Ok((code, body, discord))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_down_at_start_is_retried_and_reported() -> Result<()> {
    let text = script(8);
    let fake = FakeDiscordBot::start().await?;
    let mut api = Forwarder::closed()?;
    let section = format!(
        "[discord]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nconnect_timeout_secs = 5\nmin_edit_interval_ms = 400\n",
        api.url()
    );
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &text, 200.0)
            .raw_toml(&section),
    )
    .await?;

    let (code, body, state) = wait::until("/readyz to report Discord down", WAIT, || async {
        let (code, body, state) = readiness(&server).await?;
        Ok(state
            .filter(|s| s["state"] == "down")
            .map(|s| (code, body, s)))
    })
    .await?;
    ensure!(
        code == 200 && body["status"] == "degraded",
        "a down surface makes the instance degraded, still serving: {code} {body}"
    );
    ensure!(
        state["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach") && !e.contains(TOKEN)),
        "the down surface says why, without the token: {state}"
    );

    // Discord comes back: the retried start connects and the bot answers.
    let addr = fake
        .api_url()
        .trim_start_matches("http://")
        .parse()
        .context("the fake's address")?;
    api.open(addr).await?;
    fake.wait_ready(WAIT).await?;
    wait::until("/readyz to report Discord connected", WAIT, || async {
        let (_, body, state) = readiness(&server).await?;
        Ok(
            (body["status"] == "ready" && state.is_some_and(|s| s["state"] == "connected"))
                .then_some(()),
        )
    })
    .await?;
    let alice = alice();
    let dm = fake.dm_channel(&alice);
    fake.say(dm, &alice, "are you there now?", false)?;
    fake.wait("the reply after the late start", WAIT, |s| {
        s.bot_messages(dm).into_iter().find(|m| m.content == text)
    })
    .await?;
    Ok(())
}
