//! The buttons on the Slack app's replies: Stop while it streams, Continue and
//! Regenerate once it stopped; only the person who asked may use them (anyone else
//! is told so privately, and nothing happens; `regenerate` while it streams is
//! refused, naming the Stop button). `/chorus stop`, `continue` and `regenerate`
//! typed in the channel act on the thread where the person asked.

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_stop_continue_regenerate_and_others_refused() -> Result<()> {
    let text = script(160);
    let world = SlackWorld::start(&text, 16.0, SlackOptions::default()).await?;
    let root = world.mention(ALICE, "tell me a long story").await?;
    let reply = world
        .slack
        .wait_until("the reply streaming with Stop", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.text.len() > 20 && m.buttons == STREAMING)
        })
        .await?;

    // Bob's press is refused privately and the reply goes on.
    world.press(BOB, CHANNEL, &reply.ts, "chorus:stop").await?;
    world
        .slack
        .wait_until("Bob told privately the reply is not his", WAIT, |s| {
            s.ephemerals
                .iter()
                .find(|e| e.user == BOB && e.channel == CHANNEL)
                .cloned()
        })
        .await?;
    let seen = reply.text.len();
    world
        .slack
        .wait_until("the reply growing after Bob's press", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.ts == reply.ts && m.text.len() > seen + 20 && m.buttons == STREAMING)
        })
        .await?;

    // Regenerating while it streams is refused, naming how to stop it in Slack's form.
    world.command(ALICE, CHANNEL, "regenerate").await?;
    let busy = world
        .slack
        .wait_until(
            "Alice told privately the reply is still written",
            WAIT,
            |s| {
                s.ephemerals
                    .iter()
                    .find(|e| e.user == ALICE && e.channel == CHANNEL)
                    .map(|e| e.text.clone())
            },
        )
        .await?;
    ensure!(
        busy.contains("still being written")
            && busy.contains("the **Stop** button (or `/chorus stop`)"),
        "`/chorus regenerate` while streaming answered {busy:?}"
    );

    // Alice stops it: the text so far with a note, and Continue and Regenerate.
    world
        .press(ALICE, CHANNEL, &reply.ts, "chorus:stop")
        .await?;
    let stopped = world
        .slack
        .wait_until(
            "the stopped reply with Continue and Regenerate",
            WAIT,
            |s| {
                s.thread(CHANNEL, Some(&root))
                    .into_iter()
                    .find(|m| m.ts == reply.ts && m.buttons == CONTINUABLE)
            },
        )
        .await?;
    stopped_with_note(&stopped.text, &text, "Stopped")?;
    ensure!(
        stopped.text.contains("press **Continue**") && stopped.text.contains("**Regenerate**"),
        "the stopped note does not name the buttons: {:?}",
        stopped.text
    );
    ensure!(
        !world
            .slack
            .state()
            .ephemerals
            .iter()
            .any(|e| e.user == ALICE && e.text != busy),
        "Alice got a private refusal for her own reply"
    );

    // Continue goes on in the same message to the whole script.
    world
        .press(ALICE, CHANNEL, &reply.ts, "chorus:continue")
        .await?;
    let continued = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        continued.len() == 1 && continued[0].ts == reply.ts,
        "the continuation did not finish the same message: {continued:?}"
    );

    // Regenerate answers again, in a new message of the thread.
    world
        .press(ALICE, CHANNEL, &reply.ts, "chorus:regenerate")
        .await?;
    let both = format!("{text}{text}");
    let again = world.converged(CHANNEL, Some(&root), &both, ENDED).await?;
    ensure!(
        again.len() == 2 && again[0].ts == reply.ts,
        "the regenerated answer is not a second message after the first: {again:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_chorus_commands_in_the_channel_act_on_the_mention_thread() -> Result<()> {
    let text = script(160);
    let world = SlackWorld::start(&text, 16.0, SlackOptions::default()).await?;
    let root = world.mention(ALICE, "tell me a long story").await?;
    let reply = world
        .slack
        .wait_until("the reply streaming in the mention's thread", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.text.len() > 20 && m.buttons == STREAMING)
        })
        .await?;

    // Slack sends `/chorus` without a thread: typed in the channel, `stop` acts on
    // the thread where Alice asked, and Bob's (who asked nothing there) on nothing.
    world.command(BOB, CHANNEL, "stop").await?;
    world
        .slack
        .wait_until("Bob told privately there is nothing of his", WAIT, |s| {
            s.ephemerals.iter().find(|e| e.user == BOB).cloned()
        })
        .await?;
    world.command(ALICE, CHANNEL, "stop").await?;
    let stopped = world
        .slack
        .wait_until("the thread's reply stopped", WAIT, |s| {
            s.thread(CHANNEL, Some(&root))
                .into_iter()
                .find(|m| m.ts == reply.ts && m.buttons == CONTINUABLE)
        })
        .await?;
    stopped_with_note(&stopped.text, &text, "Stopped")?;

    world.command(ALICE, CHANNEL, "continue").await?;
    let continued = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        continued.len() == 1 && continued[0].ts == reply.ts,
        "`/chorus continue` did not finish the thread's message: {continued:?}"
    );
    world.command(ALICE, CHANNEL, "regenerate").await?;
    let both = format!("{text}{text}");
    let again = world.converged(CHANNEL, Some(&root), &both, ENDED).await?;
    ensure!(
        again.len() == 2 && again[0].ts == reply.ts,
        "`/chorus regenerate` did not answer again in the thread: {again:?}"
    );
    ensure!(
        world.slack.state().thread(CHANNEL, None).is_empty(),
        "the app posted at the channel's top level"
    );
    Ok(())
}
