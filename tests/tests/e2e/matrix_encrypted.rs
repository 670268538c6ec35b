//! An end-to-end encrypted room: the bot decrypts the question (its words become the
//! conversation's title, which `!chorus resume` lists back) and every event of its
//! reply, the original and each edit, is stored by the homeserver as
//! `m.room.encrypted` and decrypts to the script for the human. After a restart the
//! bot is the same device (its session and crypto store survive) and still answers
//! encrypted questions encrypted.

use crate::matrix_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_encrypted_room_question_and_reply() -> Result<()> {
    let text = script(30);
    let world = MatrixWorld::start(&text, 10.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let bot = world.bot_id();
    let room = alice.create_room(&[bot], true, true).await?;
    alice.wait_joined(&room, bot, WAIT).await?;

    let secret = format!("encrypted question {}", chorus_tests::synapse::short_id());
    let question = alice.send_text(&room, &secret).await?;
    let raw_question = world
        .synapse
        .raw_event(
            &alice.account.access_token,
            room.as_str(),
            question.as_str(),
        )
        .await?;
    ensure!(
        raw_question["type"] == "m.room.encrypted",
        "the question went out as {}",
        raw_question["type"]
    );

    let reply = wait_text(&alice, &room, bot, &question, &text).await?;
    ensure!(
        reply.encrypted,
        "the bot's reply or one of its edits was not encrypted: {reply:?}"
    );
    let events: Vec<_> = alice
        .seen()
        .into_iter()
        .filter(|m| m.room_id == room && m.sender.as_str() == bot)
        .collect();
    ensure!(!events.is_empty());
    for event in &events {
        let raw = world
            .synapse
            .raw_event(
                &alice.account.access_token,
                room.as_str(),
                event.event_id.as_str(),
            )
            .await?;
        ensure!(
            raw["type"] == "m.room.encrypted" && raw["content"]["ciphertext"].is_string(),
            "the homeserver holds the bot's event {} as {} (content {})",
            event.event_id,
            raw["type"],
            raw["content"]
        );
        ensure!(
            event.encrypted,
            "{} decrypted without encryption info",
            event.event_id
        );
    }

    // The bot read the question: the conversation it started is titled with its words.
    let listing = alice.send_text(&room, "!chorus resume").await?;
    let list = alice.first_reply(&room, bot, &listing, WAIT).await?;
    ensure!(
        list.text.contains(&secret) && list.encrypted,
        "`resume` does not list the decrypted question {secret:?} (or came unencrypted): {list:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_encrypted_room_works_after_a_bot_restart() -> Result<()> {
    let text = script(15);
    let mut world = MatrixWorld::start(&text, 15.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let bot = world.bot_id().to_string();
    let room = alice.create_room(&[&bot], true, true).await?;
    alice.wait_joined(&room, &bot, WAIT).await?;
    let before = alice.send_text(&room, "before the restart").await?;
    let reply = wait_text(&alice, &room, &bot, &before, &text).await?;
    ensure!(reply.encrypted, "{reply:?}");
    // Registration made one device, the bot's login another.
    let devices = world.synapse.devices(&bot).await?;

    world.restart().await?;
    let after = alice.send_text(&room, "after the restart").await?;
    let reply = wait_text(&alice, &room, &bot, &after, &text).await?;
    ensure!(
        reply.encrypted,
        "after the restart the bot's reply was not encrypted: {reply:?}"
    );
    let devices_after = world.synapse.devices(&bot).await?;
    ensure!(
        devices_after == devices,
        "the restarted bot logged in as a new device (before {devices:?}, after {devices_after:?}): \
         its session and crypto store did not survive"
    );
    Ok(())
}
