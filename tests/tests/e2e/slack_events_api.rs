//! The Slack app over the Events API, on Chorus's own listener: Slack's URL check is
//! answered; forged, stale and unsigned requests are refused with 401 and nothing in
//! them happens; a signed mention is answered in its thread, a retried delivery of it
//! is acknowledged and not answered again, and buttons come as signed interactions.

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_slack::signer::{Delivery, Signing};
use chorus_tests::fake_slack::{BOT_USER, fixtures};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_events_api_refuses_forgeries_and_answers_retries_once() -> Result<()> {
    let text = script(30);
    let options = SlackOptions {
        events_api: true,
        ..SlackOptions::default()
    };
    let world = SlackWorld::start(&text, 30.0, options).await?;
    let url = world.server.url();

    let check = Delivery::event(&fixtures::url_verification("chal-123"));
    let (status, body) = check.send(&url, Signing::Valid).await?;
    ensure!(
        status == 200 && body.contains("chal-123"),
        "url_verification got {status} {body}"
    );

    let mention = |ts: &str| {
        fixtures::app_mention(
            &format!("Ev{ts}"),
            CHANNEL,
            ALICE,
            ts,
            None,
            &format!("<@{BOT_USER}> hello?"),
        )
    };
    let mut refused = Vec::new();
    for signing in [Signing::Forged, Signing::Stale, Signing::Unsigned] {
        let ts = world.user_ts();
        let (status, body) = Delivery::event(&mention(&ts)).send(&url, signing).await?;
        ensure!(status == 401, "a {signing:?} event got {status} {body}");
        refused.push(ts);
    }
    let press = fixtures::block_actions(ALICE, CHANNEL, "1700000000.000001", "chorus:stop");
    let (status, _) = Delivery::interaction(&press)
        .send(&url, Signing::Forged)
        .await?;
    ensure!(status == 401, "a forged interaction got {status}");
    let command = fixtures::slash_command(ALICE, CHANNEL, "link");
    let (status, _) = Delivery::command(&command)
        .send(&url, Signing::Stale)
        .await?;
    ensure!(status == 401, "a stale slash command got {status}");

    // A signed mention is answered; its retry is acknowledged and not answered again.
    let ts = world.user_ts();
    let signed = Delivery::event(&mention(&ts));
    let (status, body) = signed.send(&url, Signing::Valid).await?;
    ensure!(status == 200, "a signed event got {status} {body}");
    world.converged(CHANNEL, Some(&ts), &text, ENDED).await?;
    let (status, _) = Delivery::event(&mention(&ts))
        .retried(1)
        .send(&url, Signing::Valid)
        .await?;
    ensure!(status == 200, "a retried delivery got {status}");

    // A later question answered: anything the refused or retried requests had set off
    // would have shown by now.
    let later = world.user_ts();
    Delivery::event(&mention(&later))
        .send(&url, Signing::Valid)
        .await?;
    world.converged(CHANNEL, Some(&later), &text, ENDED).await?;
    let state = world.slack.state();
    ensure!(
        state.thread(CHANNEL, Some(&ts)).len() == 1,
        "the retried delivery was answered again: {:?}",
        state.thread(CHANNEL, Some(&ts))
    );
    for ts in &refused {
        ensure!(
            state.thread(CHANNEL, Some(ts)).is_empty(),
            "a refused request was answered"
        );
    }
    ensure!(
        state.ephemerals.is_empty()
            && state.calls_of("chat.startStream").len() + state.calls_of("chat.postMessage").len()
                == 2,
        "the refused requests set something off: {:?}",
        state.calls.iter().map(|c| &c.method).collect::<Vec<_>>()
    );
    Ok(())
}

/// Delivers the signed `event` as Slack does: again while the app answers 503 (its
/// surface is not up yet: a loaded machine can take a while), until it is accepted.
async fn accepted(url: &str, event: &serde_json::Value) -> Result<()> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = Delivery::event(event).send(url, Signing::Valid).await?;
        if status != 503 {
            ensure!(status == 200, "a signed event got {status} {body}");
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the app answered 503 for {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_events_api_buttons_and_commands_are_signed_requests() -> Result<()> {
    let text = script(120);
    let options = SlackOptions {
        events_api: true,
        ..SlackOptions::default()
    };
    let world = SlackWorld::start(&text, 15.0, options).await?;
    let url = world.server.url();
    let ts = world.user_ts();
    let mention = fixtures::app_mention(
        &format!("Ev{ts}"),
        CHANNEL,
        ALICE,
        &ts,
        None,
        &format!("<@{BOT_USER}> go on and on"),
    );
    accepted(&url, &mention).await?;
    let reply = world
        .slack
        .wait_until("the reply streaming", WAIT, |s| {
            s.thread(CHANNEL, Some(&ts))
                .into_iter()
                .find(|m| !m.text.is_empty() && m.buttons == STREAMING)
        })
        .await?;
    let press = fixtures::block_actions(ALICE, CHANNEL, &reply.ts, "chorus:stop");
    let (status, _) = Delivery::interaction(&press)
        .send(&url, Signing::Valid)
        .await?;
    ensure!(status == 200, "a signed button press got {status}");
    let stopped = world
        .slack
        .wait_until("the stopped reply", WAIT, |s| {
            s.thread(CHANNEL, Some(&ts))
                .into_iter()
                .find(|m| m.buttons == CONTINUABLE)
        })
        .await?;
    stopped_with_note(&stopped.text, &text, "Stopped")?;

    let command = fixtures::slash_command(ALICE, CHANNEL, "help");
    let (status, _) = Delivery::command(&command)
        .send(&url, Signing::Valid)
        .await?;
    ensure!(status == 200, "a signed slash command got {status}");
    world
        .slack
        .wait_until("the help, shown to Alice only", WAIT, |s| {
            s.ephemerals
                .iter()
                .find(|e| e.user == ALICE && e.text.contains("/chorus"))
                .cloned()
        })
        .await?;
    Ok(())
}
