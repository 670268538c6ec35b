//! A conversation bound in a Matrix thread shows every run of it, wherever it was
//! started: a message sent on the web, to another instance than the bot's, is answered
//! in the thread too (the run's start reaches the bot's instance through the journal).

use crate::matrix_support::*;
use crate::s;
use anyhow::{Context, Result, ensure};
use chorus_tests::wait::until;
use chorus_tests::{
    ServerConfig, TestDatabase, TestRedis, TestServer, logged_in_client, script, unique_name,
};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_shows_a_web_run_in_the_bound_thread_on_another_instance() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let text = script(30);
    let shared = ServerConfig::new()
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix())
        .scripted("s", &text, 30.0);
    // A runs the Matrix bot (and the web); B only the web.
    let world =
        MatrixWorld::start_with(shared.clone().instance_id("mx-a"), BotOptions::default()).await?;
    let b = TestServer::start(shared.instance_id("mx-b")).await?;
    let bot = world.bot_id().to_string();
    let web = logged_in_client(&b, &unique_name("web")).await?;

    // The Matrix user links to the web account, then asks in a thread: the thread is
    // bound to the conversation.
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let issued: Value = web
        .request(Method::POST, "/api/link-codes")
        .send()
        .await?
        .error_for_status()
        .context("POST /api/link-codes")?
        .json()
        .await?;
    let code = issued["code"].as_str().context("no link code")?;
    let linking = alice
        .send_text(&room, &format!("!chorus link {code}"))
        .await?;
    let linked = alice.first_reply(&room, &bot, &linking, WAIT).await?;
    ensure!(
        !linked.text.starts_with('⚠'),
        "`!chorus link` answered {:?}",
        linked.text
    );
    let question = alice.send_text(&room, "first, from Matrix").await?;
    let first = wait_text(&alice, &room, &bot, &question, &text).await?;

    // Asked again on the web of instance B, in the same conversation.
    let conversation = until("the Matrix conversation on the web", WAIT, || async {
        let list: Value = web.get("/api/conversations").await?.json().await?;
        Ok(list["conversations"]
            .as_array()
            .and_then(|c| c.first())
            .map(|c| s(c, "id").to_string()))
    })
    .await?;
    let run = web
        .send_message(&conversation, "then, from the web")
        .await?
        .run_id;
    let ended = web.wait_run_ended(&run, WAIT).await?;
    ensure!(s(&ended, "status") == "complete", "{ended}");
    ensure!(s(&ended, "text") == text, "the web run wrote {ended}");

    // The bot shows that run in the same thread, as a new reply, finished exactly.
    let second = alice
        .wait_until(
            "the web run's reply in the Matrix thread to read the whole script",
            &room,
            WAIT,
            |me| {
                me.replies(&room, &bot, Some(&question))
                    .into_iter()
                    .find(|r| r.event_id != first.event_id && r.text == text)
            },
        )
        .await?;
    let replies = alice.replies(&room, &bot, Some(&question));
    ensure!(
        replies.len() == 2
            && replies[0].event_id == first.event_id
            && replies[1].event_id == second.event_id,
        "the thread holds {replies:?} instead of the two replies, each posted once"
    );
    Ok(())
}
