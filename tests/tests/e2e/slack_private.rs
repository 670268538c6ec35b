//! `/chorus` in a Slack channel: `link` and `usage` answer ephemerally, to the person
//! who asked only, and never as a message others read; the code works on the web.
//! `help` lists the commands in Slack's form (`/chorus …`) and the reply buttons. The
//! allowlists keep everyone else out.

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_slack::{self, fixtures};
use chorus_tests::{PASSWORD, logged_in_client, unique_name};
use reqwest::Method;
use serde_json::json;

fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_link_and_usage_are_ephemeral() -> Result<()> {
    let world = SlackWorld::start("Fine.", 50.0, SlackOptions::default()).await?;

    world.command(ALICE, CHANNEL, "link").await?;
    let code = world
        .slack
        .wait_until("Alice's link code, ephemeral", WAIT, |s| {
            s.ephemerals
                .iter()
                .filter(|e| e.user == ALICE && e.channel == CHANNEL)
                .find_map(|e| code_in(&e.text))
        })
        .await?;
    world.command(ALICE, CHANNEL, "usage").await?;
    world
        .slack
        .wait_until("Alice's usage, ephemeral", WAIT, |s| {
            (s.ephemerals.iter().filter(|e| e.user == ALICE).count() == 2).then_some(())
        })
        .await?;
    world.command(ALICE, CHANNEL, "help").await?;
    let help = world
        .slack
        .wait_until("Alice's help, ephemeral", WAIT, |s| {
            s.ephemerals
                .iter()
                .filter(|e| e.user == ALICE)
                .nth(2)
                .map(|e| e.text.clone())
        })
        .await?;
    ensure!(
        help.contains("`/chorus resume [N | ID]`")
            && help.contains("`/chorus link [CODE]`")
            && help.contains("**Continue**")
            && !help.contains("!chorus"),
        "`/chorus help` answered {help:?}"
    );
    {
        let state = world.slack.state();
        ensure!(
            state.messages.is_empty(),
            "the app posted messages others read: {:?}",
            state.messages
        );
        ensure!(
            state.ephemerals.iter().all(|e| e.user == ALICE),
            "someone else was shown Alice's answers: {:?}",
            state.ephemerals
        );
    }

    // The code joins a web account to Alice's Slack account.
    let name = unique_name("web");
    let web = logged_in_client(&world.server, &name).await?;
    let redeemed = web
        .request(Method::POST, "/api/link-codes/redeem")
        .json(&json!({ "code": code }))
        .send()
        .await?;
    ensure!(
        redeemed.status() == 200,
        "redeeming the code on the web: {} {}",
        redeemed.status(),
        redeemed.text().await?
    );
    world.server.client().login(&name, PASSWORD).await?;
    Ok(())
}

/// The allowlists keep others out (`allowed_workspaces`, `allowed_channels`,
/// `allowed_users`): a mention and `/chorus` by someone not listed, and a mention in a
/// channel not listed, are acknowledged to Slack and ignored — nothing posted, shown or
/// started — while the listed person is answered in the listed channel and in their DM
/// (a DM is no channel to list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_allowlists_ignore_everyone_else() -> Result<()> {
    const ELSEWHERE: &str = "C0RANDOM01";
    let options = SlackOptions {
        extra: format!(
            "allowed_workspaces = [\"{}\"]\nallowed_channels = [\"{CHANNEL}\"]\nallowed_users = [\"{ALICE}\"]",
            fake_slack::TEAM
        ),
        ..SlackOptions::default()
    };
    let text = "Fine.";
    let world = SlackWorld::start(text, 50.0, options).await?;

    // Each envelope is acknowledged once the app has decided what to do with it.
    world.mention(BOB, "may I?").await?;
    world.command(BOB, CHANNEL, "usage").await?;
    let ts = world.user_ts();
    let elsewhere = fixtures::app_mention(
        &format!("Ev{ts}"),
        ELSEWHERE,
        ALICE,
        &ts,
        None,
        &format!("<@{}> over here?", fake_slack::BOT_USER),
    );
    let envelope = world.slack.deliver("events_api", elsewhere).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;

    let asked = world.mention(ALICE, "and here?").await?;
    world.converged(CHANNEL, Some(&asked), text, ENDED).await?;
    let ts = world.user_ts();
    let dm = fixtures::message_im("EvAllowDM", ALICE_DM, ALICE, &ts, None, "and in private?");
    let envelope = world.slack.deliver("events_api", dm).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    world.converged(ALICE_DM, None, text, ENDED).await?;

    let state = world.slack.state();
    ensure!(
        state.messages.iter().all(|m| m.channel == ALICE_DM
            || (m.channel == CHANNEL && m.thread_ts.as_deref() == Some(asked.as_str()))),
        "the app answered outside Alice's thread and DM: {:?}",
        state.messages
    );
    ensure!(
        state.ephemerals.is_empty(),
        "the app showed someone a private answer: {:?}",
        state.ephemerals
    );
    Ok(())
}
