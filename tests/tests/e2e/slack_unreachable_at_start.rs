//! Slack unreachable when `chorus serve` starts does not stop the server: the web
//! serves, `/readyz` says the Slack surface is down and why (200, `degraded`), the
//! start is retried with back-off, and once Slack answers the app connects and
//! replies.

use crate::slack_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::tcp_forward::Forwarder;
use chorus_tests::{ServerConfig, script, wait};
use serde_json::Value;

/// `/readyz`'s status code and body.
async fn readiness(world: &SlackWorld) -> Result<(u16, Value)> {
    let response = world.server.client().get("/readyz").await?;
    let code = response.status().as_u16();
    Ok((code, response.json().await?))
}

fn slack_state(body: &Value) -> Option<&Value> {
    body["surfaces"]
        .as_array()?
        .iter()
        .find(|s| s["surface"] == "slack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_at_start_is_retried_and_reported() -> Result<()> {
    let text = script(12);
    let mut api = Forwarder::closed()?;
    let api_url = format!("{}/api", api.url());
    let world = SlackWorld::start_via(
        ServerConfig::new().scripted("s", &text, 200.0),
        SlackOptions::default(),
        |_| api_url.clone(),
    )
    .await?;

    let (code, body, state) = wait::until("/readyz to report Slack down", WAIT, || async {
        let (code, body) = readiness(&world).await?;
        Ok(slack_state(&body)
            .filter(|s| s["state"] == "down")
            .map(|s| (code, body.clone(), s.clone())))
    })
    .await?;
    ensure!(
        code == 200 && body["status"] == "degraded",
        "a down surface makes the instance degraded, still serving: {code} {body}"
    );
    let error = state["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("auth.test") && !error.contains("xoxb-"),
        "the down surface says why, without the token: {state}"
    );

    // Slack comes back: the retried start connects and the app answers.
    let fake_addr = world
        .slack
        .api_url()
        .trim_start_matches("http://")
        .trim_end_matches("/api")
        .parse()
        .context("the fake Slack's address")?;
    api.open(fake_addr).await?;
    wait::until("/readyz to report Slack connected", WAIT, || async {
        let (_, body) = readiness(&world).await?;
        Ok((body["status"] == "ready").then_some(()))
    })
    .await?;
    let root = world.mention(ALICE, "are you there?").await?;
    world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    Ok(())
}
