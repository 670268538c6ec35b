//! The buttons on the Slack app's replies: Stop while it streams, Continue and
//! Regenerate once it stopped; only the person who asked may use them (anyone else
//! is told so privately, and nothing happens).

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
            .any(|e| e.user == ALICE),
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
