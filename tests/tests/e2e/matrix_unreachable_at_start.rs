//! A homeserver that is down when `chorus serve` starts does not stop the server: the
//! web serves at once, `/readyz` says the Matrix surface is down and why (200,
//! `degraded`), the bot's start is retried with back-off, and once the homeserver
//! answers the surface connects and the bot replies.

use crate::matrix_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::tcp_forward::Forwarder;
use chorus_tests::{ServerConfig, script, wait};
use serde_json::Value;

/// `/readyz`'s status code and body.
async fn readiness(world: &MatrixWorld) -> Result<(u16, Value)> {
    let response = world.server.client().get("/readyz").await?;
    let code = response.status().as_u16();
    Ok((code, response.json().await?))
}

/// The state `/readyz` gives the Matrix surface.
fn matrix_state(body: &Value) -> Option<&Value> {
    body["surfaces"]
        .as_array()?
        .iter()
        .find(|s| s["surface"] == "matrix")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_down_at_start_is_retried_and_reported() -> Result<()> {
    let text = script(12);
    let mut homeserver = Forwarder::closed()?;
    let world = MatrixWorld::start_via(
        ServerConfig::new().scripted("s", &text, 200.0),
        BotOptions::default(),
        Some(&homeserver.url()),
    )
    .await?;

    // The server answers while its homeserver is unreachable, and says so.
    let down = wait::until(
        "/readyz to report the Matrix surface down",
        WAIT,
        || async {
            let (code, body) = readiness(&world).await?;
            Ok(matrix_state(&body)
                .filter(|s| s["state"] == "down")
                .map(|s| (code, body.clone(), s.clone())))
        },
    )
    .await?;
    let (code, body, state) = down;
    ensure!(
        code == 200 && body["status"] == "degraded",
        "a down surface makes the instance degraded, still serving: {code} {body}"
    );
    ensure!(
        state["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the down surface says why: {state}"
    );
    world
        .server
        .client()
        .get("/")
        .await?
        .error_for_status()
        .context("the web client is served while Matrix is down")?;

    // The homeserver comes back: the retried start connects and the bot answers.
    let synapse_addr = world
        .synapse
        .url()
        .trim_start_matches("http://")
        .parse()
        .context("the shared Synapse's address")?;
    homeserver.open(synapse_addr).await?;
    let (code, body) = wait::until("/readyz to report Matrix connected", WAIT, || async {
        let (code, body) = readiness(&world).await?;
        Ok((body["status"] == "ready").then_some((code, body)))
    })
    .await?;
    ensure!(
        code == 200 && matrix_state(&body).is_some_and(|s| s["state"] == "connected"),
        "{code} {body}"
    );
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let question = alice.send_text(&room, "are you there now?").await?;
    wait_text(&alice, &room, world.bot_id(), &question, &text).await?;
    Ok(())
}
