//! The Slack app through faults: Slack recycling the socket (`disconnect`) or the
//! socket dropping mid-reply changes nothing about the reply, and the app, connected
//! again, answers the next question; the process killed mid-reply and started again
//! finishes the same Slack message, and knows its threads as before (assistant
//! threads, who asked where).

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_slack::fixtures;
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

/// What the app knows of its threads outlives a restart (it is kept in the store):
/// after the process is killed mid-reply in an assistant thread and started again,
/// `/chorus stop` typed in the DM still acts on that thread's reply (where Alice last
/// asked), which stops in its own message; and the next question there shows the
/// assistant status again, streams natively to Alice, and does not retitle the thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_restart_keeps_what_it_knows_of_its_threads() -> Result<()> {
    let text = script(100);
    let mut world = SlackWorld::start_with(
        ServerConfig::new()
            .checkpoint_interval_ms(200)
            .scripted("s", &text, 16.0),
        SlackOptions::default(),
    )
    .await?;
    let thread = world.user_ts();
    let started = fixtures::assistant_thread_started("EvKT1", ALICE_DM, ALICE, &thread);
    let envelope = world.slack.deliver("events_api", started).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    let ts = world.user_ts();
    let event = fixtures::message_im("EvKT2", ALICE_DM, ALICE, &ts, Some(&thread), "first");
    let envelope = world.slack.deliver("events_api", event).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    let before = world
        .slack
        .wait_until("a partial reply streamed natively", WAIT, |s| {
            s.thread(ALICE_DM, Some(&thread))
                .into_iter()
                .find(|m| m.text.len() >= 40 && m.buttons == STREAMING)
        })
        .await?;

    world.server.kill_9()?;
    let (connections, calls) = {
        let s = world.slack.state();
        (s.connections, s.calls.len())
    };
    world.server.restart().await?;
    world
        .slack
        .wait_until("the restarted app connected", WAIT, |s| {
            (s.connections > connections && s.connected()).then_some(())
        })
        .await?;
    // The restarted app goes on with the reply in its message.
    world
        .slack
        .wait_until("the reply going on after the restart", WAIT, |s| {
            s.thread(ALICE_DM, Some(&thread))
                .into_iter()
                .find(|m| m.ts == before.ts && m.text.len() > before.text.len())
        })
        .await?;
    world.command(ALICE, ALICE_DM, "stop").await?;
    let stopped = world
        .slack
        .wait_until("the reply stopped by `/chorus stop` in the DM", WAIT, |s| {
            s.thread(ALICE_DM, Some(&thread))
                .into_iter()
                .find(|m| m.buttons == CONTINUABLE)
        })
        .await?;
    ensure!(
        stopped.ts == before.ts,
        "the stopped reply is {stopped:?}, not the message {}",
        before.ts
    );
    stopped_with_note(&stopped.text, &text, "Stopped")?;

    let ts = world.user_ts();
    let event = fixtures::message_im("EvKT3", ALICE_DM, ALICE, &ts, Some(&thread), "second");
    let envelope = world.slack.deliver("events_api", event).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    world
        .slack
        .wait_until("the second reply", WAIT, |s| {
            s.thread(ALICE_DM, Some(&thread))
                .into_iter()
                .find(|m| m.ts != before.ts && m.text == text && m.buttons == ENDED)
        })
        .await?;
    let state = world.slack.state();
    let after = &state.calls[calls..];
    ensure!(
        after.iter().any(
            |c| c.method == "assistant.threads.setStatus" && c.body["status"] == "is thinking…"
        ),
        "the restarted app showed no status in the assistant thread"
    );
    ensure!(
        after.iter().any(|c| c.method == "chat.startStream"
            && c.body["recipient_user_id"] == ALICE
            && c.body["thread_ts"] == thread.as_str()),
        "the restarted app did not stream the reply natively to Alice"
    );
    let titles = state.calls_of("assistant.threads.setTitle");
    ensure!(titles.len() == 1, "the thread was titled again: {titles:?}");
    Ok(())
}
