//! Asking the Matrix bot, as people do in Element: in a DM, in a group room by
//! mentioning it, and in a thread. Each reply streams by editing one message, ends
//! with exactly the scripted model's text, and stays within the configured edit cap.

use crate::matrix_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_dm_reply_streams_by_edits_within_the_cap() -> Result<()> {
    // ~10 s of streaming at one edit a second at most: uncapped, that is about ten
    // edits; the cap allows four.
    let text = script(40);
    let cap = 4;
    let world = MatrixWorld::start(
        &text,
        4.0,
        BotOptions {
            max_edits_per_message: cap,
            ..BotOptions::default()
        },
    )
    .await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;

    let question = alice.send_text(&room, "tell me about Chorus").await?;
    let first = alice
        .first_reply(&room, world.bot_id(), &question, WAIT)
        .await?;
    ensure!(
        first.text.len() < text.len(),
        "the first thing the bot showed was already the whole reply: no streaming"
    );
    let done = wait_text(&alice, &room, world.bot_id(), &question, &text).await?;
    ensure!(
        done.event_id == first.event_id,
        "the reply ended in another message ({}) than it started in ({})",
        done.event_id,
        first.event_id
    );
    // Count once the bot has answered a later command: a late edit would have come
    // before.
    let replies = thread_until_help(&alice, &room, world.bot_id(), &question).await?;
    ensure!(
        replies.len() == 2 && replies[0].event_id == first.event_id,
        "expected the reply, then the help, in the thread; got {replies:?}"
    );
    let reply = &replies[0];
    ensure!(
        reply.text == text,
        "the reply changed after converging: {reply:?}"
    );
    ensure!(
        (1..=cap as usize).contains(&reply.edits),
        "the reply got {} edits; expected between 1 (it streamed) and the cap {cap}",
        reply.edits
    );
    let html = reply.html.as_deref().unwrap_or_default();
    ensure!(
        html.contains("<strong>bold</strong>") && html.contains("<code>code</code>"),
        "the reply's HTML does not render the script's markdown: {html:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_group_room_answers_mentions_in_threads() -> Result<()> {
    let text = script(25);
    let world = MatrixWorld::start(&text, 15.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let bob = world.human("bob").await?;
    let room = alice
        .create_room(&[world.bot_id(), bob.user_id()], false, false)
        .await?;
    bob.join(&room).await?;
    alice.wait_joined(&room, world.bot_id(), WAIT).await?;
    alice.wait_joined(&room, bob.user_id(), WAIT).await?;

    // People talking among themselves: not for the bot. Then a question for it.
    alice.send_text(&room, "bob, lunch at noon?").await?;
    let question = alice
        .send_mention(&room, world.bot_id(), BOT_NAME, "what is Chorus?")
        .await?;
    let reply = wait_text(&alice, &room, world.bot_id(), &question, &text).await?;
    // The chatter before the question got no answer, which would have come first.
    ensure_bot_posted_only(&alice, &room, world.bot_id(), &[&reply.event_id])?;
    // Bob sees the same converged reply in the same thread.
    let seen_by_bob = wait_text(&bob, &room, world.bot_id(), &question, &text).await?;
    ensure!(seen_by_bob.event_id == reply.event_id);

    // A follow-up in the thread, mentioning the bot: the answer goes to that thread.
    let follow_up = alice
        .send_in_thread(
            &room,
            &question,
            "and how does it continue?",
            Some((world.bot_id(), BOT_NAME)),
        )
        .await?;
    alice
        .wait_until("a second reply in the thread", &room, WAIT, |me| {
            let r = me.replies(&room, world.bot_id(), Some(&question));
            (r.len() == 2 && r[1].text == text).then_some(())
        })
        .await?;
    // Nothing went to a thread of its own (the follow-up is not a new root).
    ensure!(
        alice
            .replies(&room, world.bot_id(), Some(&follow_up))
            .is_empty(),
        "the bot opened a thread on the follow-up instead of answering in the thread"
    );
    ensure!(
        alice.replies(&room, world.bot_id(), None).len() == 2,
        "the bot posted outside the thread: {:?}",
        alice.replies(&room, world.bot_id(), None)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_dm_thread_follow_up_needs_no_mention() -> Result<()> {
    let text = script(20);
    let world = MatrixWorld::start(&text, 15.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;

    let question = alice.send_text(&room, "first question").await?;
    wait_text(&alice, &room, world.bot_id(), &question, &text).await?;
    alice
        .send_in_thread(&room, &question, "second question", None)
        .await?;
    alice
        .wait_until(
            "the answer to the follow-up in the thread",
            &room,
            WAIT,
            |me| {
                let r = me.replies(&room, world.bot_id(), Some(&question));
                (r.len() == 2 && r.iter().all(|r| r.text == text)).then_some(())
            },
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_reply_outside_the_thread_goes_on_in_it() -> Result<()> {
    // A client without threads answers the bot's message with a rich reply in the main
    // timeline: the bot goes on with that conversation, in its thread.
    let text = script(20);
    let world = MatrixWorld::start(&text, 15.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();

    let question = alice.send_text(&room, "first question").await?;
    let answer = wait_text(&alice, &room, bot, &question, &text).await?;
    let follow_up = alice
        .send_reply(&room, &answer.event_id, bot, "and then?")
        .await?;
    alice
        .wait_until(
            "the answer to the reply in the first thread",
            &room,
            WAIT,
            |me| {
                let r = me.replies(&room, bot, Some(&question));
                (r.len() == 2 && r.iter().all(|r| r.text == text)).then_some(())
            },
        )
        .await?;
    ensure!(
        alice.replies(&room, bot, Some(&follow_up)).is_empty(),
        "the bot opened a new thread on the reply"
    );
    // Same conversation: `resume` (answered in the thread it is sent in) lists one.
    alice
        .send_in_thread(&room, &question, "!chorus resume", None)
        .await?;
    let list = alice
        .wait_until("the conversation list in the thread", &room, WAIT, |me| {
            me.replies(&room, bot, Some(&question))
                .into_iter()
                .find(|r| r.text.contains("recent conversations"))
        })
        .await?;
    ensure!(
        list.text.contains("1. first question") && !list.text.contains("2. "),
        "the reply started another conversation: {:?}",
        list.text
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_typing_notice_until_the_first_text() -> Result<()> {
    // The first token comes 2.5 s after the question: the bot shows it is typing
    // meanwhile, and stops once its reply is there.
    let text = script(4);
    let world = MatrixWorld::start(&text, 0.4, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();
    let question = alice.send_text(&room, "think first").await?;
    wait_text(&alice, &room, bot, &question, &text).await?;
    let typing = alice
        .wait_until("the bot's typing notice to end", &room, WAIT, |me| {
            let typing: Vec<_> = me
                .typing()
                .into_iter()
                .filter(|t| t.room_id == room)
                .collect();
            typing
                .last()
                .is_some_and(|t| !t.user_ids.iter().any(|u| u == bot))
                .then_some(typing)
        })
        .await?;
    // Seen typing while the room held at most the question: before any bot message.
    let typed_early = typing
        .iter()
        .any(|t| t.user_ids.iter().any(|u| u == bot) && t.messages_before <= 1);
    ensure!(
        typed_early,
        "the bot was never seen typing before its first message: {typing:?}"
    );
    Ok(())
}
