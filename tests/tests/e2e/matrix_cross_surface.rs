//! Interrupt on one surface, continue on another. A reply started and stopped on the
//! web is found by `!chorus resume` in Matrix (the Matrix user linked to the web
//! account with a link code), bound with `!chorus resume 1` and finished with
//! `!chorus continue`; the web then shows the finished message. The reverse: a
//! Matrix reply whose bot process is killed is continued from the web on another
//! instance, and the restarted bot finishes the same Matrix message.

use crate::matrix_support::*;
use crate::{only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::matrix_client::MatrixUser;
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, ServerConfig, TestDatabase, TestRedis, TestServer, logged_in_client, script,
    unique_name,
};
use matrix_sdk::ruma::RoomId;
use reqwest::Method;
use serde_json::Value;

/// Issues a link code on the web and redeems it from Matrix with `!chorus link CODE`
/// in `room`; waits for the bot's answer.
async fn link(web: &ApiClient, alice: &MatrixUser, room: &RoomId, bot: &str) -> Result<()> {
    let issued: Value = web
        .request(Method::POST, "/api/link-codes")
        .send()
        .await?
        .error_for_status()
        .context("POST /api/link-codes")?
        .json()
        .await?;
    let code = issued["code"].as_str().context("no link code")?;
    let sent = alice
        .send_text(room, &format!("!chorus link {code}"))
        .await?;
    let answer = alice.first_reply(room, bot, &sent, WAIT).await?;
    ensure!(
        !answer.text.starts_with('⚠') && !answer.text.to_lowercase().contains("invalid"),
        "`!chorus link` answered {:?}",
        answer.text
    );
    Ok(())
}

/// The web account's conversations, newest first.
async fn conversations(web: &ApiClient) -> Result<Vec<Value>> {
    let list: Value = web.get("/api/conversations").await?.json().await?;
    list["conversations"]
        .as_array()
        .cloned()
        .with_context(|| format!("no conversations array: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_resumes_and_continues_a_web_reply() -> Result<()> {
    let text = script(60);
    let world = MatrixWorld::start(&text, 6.0, BotOptions::default()).await?;
    let bot = world.bot_id();
    let web = logged_in_client(&world.server, &unique_name("web")).await?;

    // Started and stopped on the web.
    let conversation = web.create_conversation(None).await?;
    let run = web
        .send_message(&conversation, "from the web")
        .await?
        .run_id;
    until("the web run to show text", WAIT, || async {
        Ok((s(&web.run(&run).await?, "text").len() > 20).then_some(()))
    })
    .await?;
    web.stop(&run).await?;
    let stopped = web.wait_run_ended(&run, WAIT).await?;
    ensure!(s(&stopped, "status") == "stopped", "{stopped}");
    let partial = s(&stopped, "text").to_string();
    crate::assert_proper_prefix(&partial, &text)?;

    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    link(&web, &alice, &room, bot).await?;

    // `resume` lists the web conversation with its stopped reply.
    let listing = alice.send_text(&room, "!chorus resume").await?;
    let list = alice.first_reply(&room, bot, &listing, WAIT).await?;
    ensure!(
        list.text.contains("1. e2e") && list.text.contains("stopped"),
        "`!chorus resume` does not list the stopped web conversation first: {:?}",
        list.text
    );

    // Bound here, it shows the partial reply; `continue` finishes the same message.
    let resume = alice.send_text(&room, "!chorus resume 1").await?;
    let shown = alice
        .wait_until(
            "the resumed reply with its partial text",
            &room,
            WAIT,
            |me| {
                me.replies(&room, bot, Some(&resume))
                    .into_iter()
                    .find(|r| r.text.starts_with(&partial) && r.text.contains("Stopped"))
            },
        )
        .await?;
    alice
        .send_in_thread(&room, &resume, "!chorus continue", None)
        .await?;
    let done = wait_text(&alice, &room, bot, &resume, &text).await?;
    ensure!(
        done.event_id == shown.event_id,
        "`continue` finished {} rather than the resumed message {}",
        done.event_id,
        shown.event_id
    );

    // The web shows the same message, finished.
    let messages = web.messages(&conversation).await?;
    ensure!(messages.len() == 2, "the web conversation has {messages:?}");
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content") == text,
        "the web shows {:?}, not the whole script",
        assistant["content"]
    );
    ensure!(
        s(assistant, "run_status") == "complete",
        "the web message's run is {}",
        assistant["run_status"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_reply_of_a_killed_bot_continues_on_the_web() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let text = script(80);
    let shared = ServerConfig::new()
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix())
        .lease_ttl_secs(3)
        .checkpoint_interval_ms(200)
        .scripted("s", &text, 6.0);
    // A runs the Matrix bot (and the web); B only the web.
    let mut world =
        MatrixWorld::start_with(shared.clone().instance_id("mx-a"), BotOptions::default()).await?;
    let b = TestServer::start(shared.instance_id("mx-b")).await?;
    let bot = world.bot_id().to_string();
    let web = logged_in_client(&b, &unique_name("web")).await?;

    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    link(&web, &alice, &room, &bot).await?;

    let question = alice.send_text(&room, "a long one, please").await?;
    let first = alice.first_reply(&room, &bot, &question, WAIT).await?;
    wait_partial(&alice, &room, &bot, &first.event_id, 40).await?;
    world.server.kill_9()?;

    // B sees the conversation of the linked account, marks the run interrupted once
    // A's lease lapses, and continues it.
    let conversation = until("the Matrix conversation on the web", WAIT, || async {
        Ok(conversations(&web)
            .await?
            .first()
            .map(|c| s(c, "id").to_string()))
    })
    .await?;
    let run = until("the Matrix reply's run on the web", WAIT, || async {
        let messages = web.messages(&conversation).await?;
        Ok(messages
            .iter()
            .find(|m| m["role"] == "assistant")
            .map(|m| s(m, "run_id").to_string()))
    })
    .await?;
    let interrupted = until("the run to be interrupted", WAIT, || async {
        let view = web.run(&run).await?;
        Ok((s(&view, "status") == "interrupted").then_some(view))
    })
    .await?;
    let partial = s(&interrupted, "text").to_string();
    crate::assert_proper_prefix(&partial, &text)?;
    let continuation = web.continue_run(&run).await?;
    let ended = web.wait_run_ended(&continuation, WAIT).await?;
    ensure!(s(&ended, "status") == "complete", "{ended}");
    let messages = web.messages(&conversation).await?;
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content") == text,
        "the web shows {:?}, not the whole script",
        assistant["content"]
    );

    // The bot comes back and finishes the Matrix message it had started.
    world.server.restart().await?;
    finished_in_place(&alice, &room, &bot, &question, &first.event_id, &text).await
}
