//! Asking the Discord bot as people do: in a DM, by mentioning it in a channel (a
//! thread opens; follow-ups there need no mention) and with `/ask`. Each reply streams
//! by editing one message, paced and capped, with a typing notice first, a Stop button
//! while it streams and Regenerate once complete, and ends with exactly the scripted
//! model's text.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_discord_bot::{BOT_ID, CHANNEL_ID};
use chorus_tests::script;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_dm_reply_streams_by_paced_edits_to_the_script() -> Result<()> {
    let text = script(40);
    let cap = 6;
    let world = DiscordWorld::start(&text, 12.0, &format!("max_edits_per_message = {cap}")).await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);

    world.fake.say(dm, &alice, "tell me about Chorus", false)?;
    let first = world.wait_partial(dm, 0, 1).await?;
    ensure!(
        first.content.len() < text.len(),
        "the first thing shown was already the whole reply: no streaming"
    );
    let done = world.wait_text(dm, 0, &text).await?;
    ensure!(done.id == first.id, "the reply ended in another message");
    // Regenerate replaces Stop once the reply is complete (nothing to continue).
    let done = world
        .fake
        .wait("the buttons of the complete reply", WAIT, |s| {
            s.messages
                .get(&done.id)
                .filter(|m| m.buttons() == ["chorus:regenerate"])
                .cloned()
        })
        .await?;
    ensure!(
        (1..=cap as usize).contains(&done.edits.len().saturating_sub(1)),
        "{} edits of the text; expected between 1 and the cap {cap} (plus the buttons' edit)",
        done.edits.len()
    );
    // Paced while streaming (the final text and the buttons' edit come at the end).
    for pair in done
        .edits
        .windows(2)
        .take(done.edits.len().saturating_sub(3))
    {
        ensure!(
            pair[1] - pair[0] >= Duration::from_millis(350),
            "two edits {:?} apart: the pacing is 400 ms",
            pair[1] - pair[0]
        );
    }
    let s = world.fake.lock();
    ensure!(
        s.bot_messages(dm).len() == 1,
        "more than one message: {:?}",
        s.bot_messages(dm)
    );
    // Typing first, then the first post with a Stop button.
    let post = s
        .calls
        .iter()
        .find(|c| c.method == "POST" && c.path.ends_with(&format!("/channels/{dm}/messages")))
        .expect("the reply's post");
    ensure!(
        post.body["components"][0]["components"][0]["custom_id"] == "chorus:stop",
        "the streaming reply had no Stop button: {}",
        post.body
    );
    ensure!(
        s.typing.iter().any(|(c, at)| *c == dm && *at <= post.at),
        "no typing notice before the first text"
    );
    ensure!(
        post.body["allowed_mentions"]["parse"] == serde_json::json!([]),
        "the reply may ping people: {}",
        post.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_mention_opens_a_thread_and_follow_ups_need_none() -> Result<()> {
    let text = script(20);
    let world = DiscordWorld::start(&text, 40.0, "").await?;
    let alice = alice();

    world
        .fake
        .say(CHANNEL_ID, &alice, "bob, lunch at noon?", false)?;
    let question = world
        .fake
        .say(CHANNEL_ID, &alice, "what is Chorus?", true)?;
    // The thread is opened on the question itself (its id is the message's).
    world.wait_text(question, 0, &text).await?;
    let (threads, in_channel) = {
        let s = world.fake.lock();
        (s.threads(CHANNEL_ID), s.bot_messages(CHANNEL_ID))
    };
    ensure!(
        threads.len() == 1 && threads[0].id == question && threads[0].owner == Some(BOT_ID),
        "threads: {threads:?}"
    );
    ensure!(
        in_channel.is_empty(),
        "the bot posted in the channel itself: {in_channel:?}"
    );

    world
        .fake
        .say(question, &alice, "and how does it continue?", false)?;
    world.wait_text(question, 1, &text).await?;
    ensure!(
        world.fake.lock().threads(CHANNEL_ID).len() == 1,
        "a second thread opened"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_slash_ask_answers_in_a_thread_or_the_dm() -> Result<()> {
    let text = script(15);
    let world = DiscordWorld::start(&text, 40.0, "").await?;
    let alice = alice();

    let token = world.fake.slash(
        CHANNEL_ID,
        &alice,
        "ask",
        &[("question", "what is Chorus?")],
    )?;
    let (answer, original) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(answer.callback == Some(5), "not deferred: {answer:?}");
    ensure!(
        !answer.ephemeral && original.content.contains("what is Chorus?"),
        "{original:?}"
    );
    // A thread from the question, and the reply in it as channel messages.
    world.wait_text(original.id, 0, &text).await?;

    let dm = world.fake.dm_channel(&alice);
    let token = world
        .fake
        .slash(dm, &alice, "ask", &[("question", "again?")])?;
    world.fake.answer_of(&token, WAIT).await?;
    world.wait_text(dm, 1, &text).await?;
    let s = world.fake.lock();
    ensure!(
        s.threads(CHANNEL_ID).len() == 1,
        "a DM question opened a thread"
    );
    ensure!(
        s.commands
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect::<Vec<_>>()
            == [
                "ask",
                "new",
                "model",
                "stop",
                "continue",
                "regenerate",
                "resume",
                "link",
                "usage",
                "help"
            ],
        "registered commands: {:?}",
        s.commands
    );
    Ok(())
}
