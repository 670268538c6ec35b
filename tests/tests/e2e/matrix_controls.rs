//! Stop and continue from Matrix: a ⏹️ reaction (or `!chorus stop`) stops the reply
//! mid-way, the message then shows its partial text with a note, and ▶️ (or
//! `!chorus continue`) goes on in the same message until it reads the whole script.

use crate::matrix_support::*;
use anyhow::Result;
use chorus_tests::matrix_client::MatrixUser;
use chorus_tests::script;
use matrix_sdk::ruma::{EventId, RoomId};

/// Waits until the bot's first message in the thread of `question` ends with the
/// "Stopped" note; returns its text before the note (a proper prefix of `text`).
async fn wait_stopped(
    alice: &MatrixUser,
    room: &RoomId,
    bot: &str,
    question: &EventId,
    text: &str,
) -> Result<String> {
    let reply = alice
        .wait_until("the reply to show it was stopped", room, WAIT, |me| {
            me.replies(room, bot, Some(question))
                .into_iter()
                .next()
                .filter(|r| r.text.contains("Stopped"))
        })
        .await?;
    check_partial_with_note(&reply.text, text, "Stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_stop_and_continue_by_reaction() -> Result<()> {
    let text = script(60);
    let world = MatrixWorld::start(&text, 5.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();

    let question = alice.send_text(&room, "go slowly").await?;
    let first = alice.first_reply(&room, bot, &question, WAIT).await?;
    wait_partial(&alice, &room, bot, &first.event_id, 20).await?;
    alice.react(&room, &first.event_id, "⏹️").await?;
    wait_stopped(&alice, &room, bot, &question, &text).await?;

    alice.react(&room, &first.event_id, "▶️").await?;
    finished_in_place(&alice, &room, bot, &question, &first.event_id, &text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_stop_and_continue_by_command() -> Result<()> {
    let text = script(60);
    let world = MatrixWorld::start(&text, 5.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();

    let question = alice.send_text(&room, "go slowly").await?;
    let first = alice.first_reply(&room, bot, &question, WAIT).await?;
    wait_partial(&alice, &room, bot, &first.event_id, 20).await?;
    alice
        .send_in_thread(&room, &question, "!chorus stop", None)
        .await?;
    wait_stopped(&alice, &room, bot, &question, &text).await?;

    alice
        .send_in_thread(&room, &question, "!chorus continue", None)
        .await?;
    // The commands get no replies of their own: the thread holds the one message.
    finished_in_place(&alice, &room, bot, &question, &first.event_id, &text).await
}
