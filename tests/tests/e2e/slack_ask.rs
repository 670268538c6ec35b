//! Asking the Slack app, as people do in Slack: mentioning it in a channel (the reply
//! goes in the message's thread, streamed natively with a Stop button until it ends,
//! its appends paced, or by `chat.update` in the workspace's pace; a stream Slack
//! expired is finished by editing, one it refused is posted and edited instead), in a DM (at its top level; an event Slack delivers twice is answered
//! once) and in an assistant thread (prompts, status, title).

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_slack::{Fault, fixtures};
use chorus_tests::script;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_channel_mention_streams_natively_in_its_thread() -> Result<()> {
    let text = script(60);
    let world = SlackWorld::start(&text, 20.0, SlackOptions::default()).await?;

    let root = world.mention(ALICE, "what is Chorus?").await?;
    // While it streams: one streamed message in the thread, partial, with Stop.
    let partial = world
        .slack
        .wait_until("a partial streamed reply with a Stop button", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.streaming && m.buttons == STREAMING && m.text.len() > 20)
        })
        .await?;
    ensure!(
        text.starts_with(&partial.text) && partial.text.len() < text.len(),
        "the partial reply is not a prefix of the script: {partial:?}"
    );
    let done = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        done.len() == 1 && done[0].ts == partial.ts && done[0].streamed && !done[0].streaming,
        "the reply was not one stream, ended: {done:?}"
    );
    let state = world.slack.state();
    ensure!(
        state.thread(CHANNEL, None).is_empty(),
        "the app posted at the channel's top level: {:?}",
        state.thread(CHANNEL, None)
    );
    let start = &state.calls_of("chat.startStream")[0];
    ensure!(
        start.body["recipient_user_id"] == ALICE && start.body["thread_ts"] == root.as_str(),
        "the stream is not for Alice in her thread: {}",
        start.body
    );
    let appends = state.calls_of("chat.appendStream");
    ensure!(
        appends.len() >= 2
            && state.calls_of("chat.stopStream").len() == 1
            && state.calls_of("chat.postMessage").is_empty(),
        "not streamed natively: {:?}",
        state.calls.iter().map(|c| &c.method).collect::<Vec<_>>()
    );
    // Buffered: appends come at most one per edit interval (200 ms here), however fast
    // the model writes (the last one, the whole text, comes when the reply ends).
    for pair in appends.windows(2).take(appends.len() - 2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        ensure!(
            gap >= Duration::from_millis(150),
            "two appends {gap:?} apart: the pacing is 200 ms"
        );
    }
    Ok(())
}

/// Slack refusing to start a native stream (`ok: false`, as where the app may not
/// stream): the reply is posted and edited instead, to the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refused_stream_is_posted_and_edited_instead() -> Result<()> {
    let text = script(30);
    let world = SlackWorld::start(&text, 40.0, SlackOptions::default()).await?;
    world.slack.fail_next(
        "chat.startStream",
        Fault::Error("not_allowed_token_type".into()),
    );
    let root = world.mention(ALICE, "what is Chorus?").await?;
    let done = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    let state = world.slack.state();
    ensure!(
        done.len() == 1 && !done[0].streamed,
        "the reply is not one edited message: {done:?}"
    );
    ensure!(
        state.calls_of("chat.startStream").len() == 1
            && state.calls_of("chat.postMessage").len() == 1
            && !state.calls_of("chat.update").is_empty()
            && state.calls_of("chat.appendStream").is_empty(),
        "not posted and edited after the refusal: {:?}",
        state.calls.iter().map(|c| &c.method).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_chat_update_path_converges_at_the_workspace_pace() -> Result<()> {
    let text = script(60);
    let options = SlackOptions {
        native_streaming: false,
        update_interval_ms: 250,
        ..SlackOptions::default()
    };
    let world = SlackWorld::start(&text, 20.0, options).await?;

    let root = world.mention(ALICE, "what is Chorus?").await?;
    let partial = world
        .slack
        .wait_until("a partial reply with a Stop button", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.buttons == STREAMING && m.text.len() < text.len())
        })
        .await?;
    ensure!(
        !partial.text.is_empty() && text.starts_with(&partial.text),
        "the partial reply is not a prefix of the script: {partial:?}"
    );
    let done = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        done.len() == 1 && done[0].ts == partial.ts && done[0].edits >= 2 && !done[0].streamed,
        "the reply did not stream by editing one message: {done:?}"
    );
    // chat.update is paced for the workspace: never two within the interval.
    let updates = world.slack.state().calls_of("chat.update");
    for pair in updates.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        ensure!(
            gap >= Duration::from_millis(200),
            "two chat.update calls {gap:?} apart; the pace is one per 250 ms"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_expired_stream_is_finished_by_editing() -> Result<()> {
    let text = script(90);
    let world = SlackWorld::start(&text, 15.0, SlackOptions::default()).await?;
    let root = world.mention(ALICE, "take your time").await?;
    let streaming = world
        .slack
        .wait_until("the reply streaming natively", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.streaming && m.text.len() > 20)
        })
        .await?;
    ensure!(world.slack.expire_streams() == 1, "one stream to expire");
    let expired_at = std::time::Instant::now();
    let done = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        done.len() == 1 && done[0].ts == streaming.ts,
        "the expired stream was not finished in its message: {done:?}"
    );
    let state = world.slack.state();
    ensure!(
        state
            .calls_of("chat.update")
            .iter()
            .any(|c| c.at > expired_at && c.body["ts"] == streaming.ts.as_str()),
        "no chat.update picked the expired stream up"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_dm_is_answered_at_its_top_level_once() -> Result<()> {
    let text = script(20);
    let world = SlackWorld::start(&text, 40.0, SlackOptions::default()).await?;

    let ts = world.user_ts();
    let event = fixtures::message_im("EvDM1", ALICE_DM, ALICE, &ts, None, "hello there");
    let first = world.slack.deliver("events_api", event.clone()).await?;
    world.slack.wait_ack(&first, WAIT).await?;
    // Slack redelivers an envelope it thinks was lost: acknowledged, not answered.
    let again = world.slack.deliver("events_api", event).await?;
    world.slack.wait_ack(&again, WAIT).await?;
    world.converged(ALICE_DM, None, &text, ENDED).await?;

    // A second question in the DM: its answer comes after the first, and the first
    // was answered once.
    let ts = world.user_ts();
    let event = fixtures::message_im("EvDM2", ALICE_DM, ALICE, &ts, None, "and again?");
    let second = world.slack.deliver("events_api", event).await?;
    world.slack.wait_ack(&second, WAIT).await?;
    let both = format!("{text}{text}");
    let replies = world.converged(ALICE_DM, None, &both, ENDED).await?;
    ensure!(
        replies.len() == 2 && replies[0].buttons == ENDED,
        "expected two replies at the DM's top level: {replies:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_assistant_thread_prompts_status_and_title() -> Result<()> {
    let text = script(30);
    let world = SlackWorld::start(&text, 20.0, SlackOptions::default()).await?;
    let thread = world.user_ts();
    let started = fixtures::assistant_thread_started("EvAT1", ALICE_DM, ALICE, &thread);
    let envelope = world.slack.deliver("events_api", started).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    world
        .slack
        .wait_until("the suggested prompts", WAIT, |s| {
            s.calls_of("assistant.threads.setSuggestedPrompts")
                .into_iter()
                .find(|c| c.body["thread_ts"] == thread.as_str())
        })
        .await?;

    let ts = world.user_ts();
    let question = "How do I keep a reply going after a restart?";
    let event = fixtures::message_im("EvAT2", ALICE_DM, ALICE, &ts, Some(&thread), question);
    let envelope = world.slack.deliver("events_api", event).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    world
        .converged(ALICE_DM, Some(&thread), &text, ENDED)
        .await?;

    let state = world.slack.state();
    let titles = state.calls_of("assistant.threads.setTitle");
    ensure!(
        titles.len() == 1 && titles[0].body["title"] == question,
        "the thread's title: {titles:?}"
    );
    // "is thinking…" shows before the first words and is cleared after.
    let statuses = state.calls_of("assistant.threads.setStatus");
    let first_post = state
        .calls
        .iter()
        .find(|c| c.method == "chat.startStream" || c.method == "chat.postMessage")
        .map(|c| c.at)
        .expect("the reply was posted");
    ensure!(
        statuses
            .iter()
            .any(|c| c.body["status"] == "is thinking…" && c.at < first_post),
        "no status before the first words: {statuses:?}"
    );
    ensure!(
        statuses.last().is_some_and(|c| c.body["status"] == ""),
        "the status was not cleared: {statuses:?}"
    );
    Ok(())
}
