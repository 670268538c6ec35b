//! The Slack app through faults: Slack recycling the socket (`disconnect`) or the
//! socket dropping mid-reply changes nothing about the reply, and the app, connected
//! again, answers the next question; the process killed mid-reply and started again
//! finishes the same Slack message.

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::{ServerConfig, script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_socket_mode_reconnects_mid_reply() -> Result<()> {
    let text = script(100);
    let world = SlackWorld::start(&text, 15.0, SlackOptions::default()).await?;
    let root = world.mention(ALICE, "a long one").await?;
    world
        .slack
        .wait_until("the reply streaming", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.buttons == STREAMING)
        })
        .await?;
    world.slack.request_disconnect()?;
    world
        .slack
        .wait_until("a second connection after `disconnect`", WAIT, |s| {
            (s.connections >= 2 && s.connected()).then_some(())
        })
        .await?;
    world.slack.drop_socket()?;
    world
        .slack
        .wait_until("a third connection after the dropped socket", WAIT, |s| {
            (s.connections >= 3 && s.connected()).then_some(())
        })
        .await?;
    let reply = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(reply.len() == 1, "the reply split or repeated: {reply:?}");

    let next = world.mention(ALICE, "still there?").await?;
    world.converged(CHANNEL, Some(&next), &text, ENDED).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_restart_mid_reply_finishes_the_same_message() -> Result<()> {
    let text = script(80);
    let mut world = SlackWorld::start_with(
        ServerConfig::new()
            .checkpoint_interval_ms(200)
            .scripted("s", &text, 8.0),
        SlackOptions::default(),
    )
    .await?;
    let root = world.mention(ALICE, "long answer please").await?;
    let before = world
        .slack
        .wait_until("a partial reply", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.text.len() >= 40 && m.buttons == STREAMING)
        })
        .await?;
    ensure!(text.starts_with(&before.text) && before.text.len() < text.len());
    world.server.kill_9()?;
    world.server.restart().await?;
    let done = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        done.len() == 1 && done[0].ts == before.ts,
        "the restarted app did not finish its message in place: {done:?}"
    );
    ensure!(
        world.server.log().contains("resuming an unfinished render"),
        "the restarted app did not log resuming the render"
    );
    Ok(())
}
