//! The buttons on a reply in a thread: only its owner may press them (another person
//! gets an ephemeral refusal and the reply goes on); Stop ends it with a note and
//! offers Continue and Regenerate; Continue finishes it in the same message;
//! Regenerate answers again in a new one.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_discord_bot::{CHANNEL_ID, ensure_buttons};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_buttons_stop_continue_regenerate_for_their_owner_only() -> Result<()> {
    let text = script(80);
    let world = DiscordWorld::start(&text, 10.0, "").await?;
    let (alice, bob) = (alice(), bob());
    let thread = world.fake.say(CHANNEL_ID, &alice, "count for me", true)?;
    let reply = world.wait_partial(thread, 0, 20).await?;
    ensure_buttons(&reply, &["chorus:stop"])?;

    // Bob cannot stop alice's reply: he alone is told so.
    let token = world.fake.press(reply.id, &bob, "chorus:stop")?;
    let (answer, refusal) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.ephemeral && refusal.ephemeral && refusal.content.contains("another person"),
        "bob's press was answered {answer:?} {refusal:?}"
    );
    ensure!(
        world
            .fake
            .lock()
            .public_messages(thread)
            .iter()
            .all(|m| !m.content.contains("another person")),
        "the refusal was posted for everyone"
    );

    let token = world.fake.press(reply.id, &alice, "chorus:stop")?;
    let (answer, _) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(answer.ephemeral, "the stop's answer is public");
    let stopped = world
        .fake
        .wait(
            "the stopped reply with Continue and Regenerate",
            WAIT,
            |s| {
                s.messages
                    .get(&reply.id)
                    .filter(|m| {
                        m.content.contains("Stopped")
                            && m.buttons() == ["chorus:continue", "chorus:regenerate"]
                    })
                    .cloned()
            },
        )
        .await?;
    check_partial_with_note(&stopped.content, &text, "Stopped")?;
    ensure!(
        stopped.content.contains("press **Continue**")
            && stopped.content.contains("**Regenerate**"),
        "the stopped note does not name the buttons: {:?}",
        stopped.content
    );

    // Continue goes on in the same message, to the whole script.
    let token = world.fake.press(reply.id, &alice, "chorus:continue")?;
    world.fake.answer_of(&token, WAIT).await?;
    let done = world.wait_text(thread, 0, &text).await?;
    ensure!(done.id == reply.id, "continued in another message");

    // Regenerate answers again, in a new message.
    let token = world.fake.press(reply.id, &alice, "chorus:regenerate")?;
    world.fake.answer_of(&token, WAIT).await?;
    world.wait_text(thread, 1, &text).await?;
    let final_first = world.fake.lock().messages[&reply.id].clone();
    ensure!(
        final_first.content == text,
        "the first reply changed: {final_first:?}"
    );
    Ok(())
}
