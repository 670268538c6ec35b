//! Interrupt on one surface, continue on another. A reply started and stopped on the
//! web is brought into a Discord DM with `/resume` (the Discord user linked to the web
//! account with `/link CODE`) and finished there with the Continue button; the web then
//! shows the finished message. The reverse: a Discord reply whose bot process is killed
//! is continued from the web on another instance (shared PostgreSQL and Redis), and
//! the restarted bot finishes the same Discord message.

use crate::discord_support::*;
use crate::{only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::fake_discord_bot::{FakeDiscordBot, Person};
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, ServerConfig, TestDatabase, TestRedis, TestServer, logged_in_client, script,
    unique_name,
};
use reqwest::Method;
use serde_json::Value;

/// Issues a link code on the web and redeems it with `/link CODE` in `channel`.
async fn link(web: &ApiClient, fake: &FakeDiscordBot, channel: u64, person: &Person) -> Result<()> {
    let issued: Value = web
        .request(Method::POST, "/api/link-codes")
        .send()
        .await?
        .error_for_status()
        .context("POST /api/link-codes")?
        .json()
        .await?;
    let code = issued["code"].as_str().context("no link code")?;
    let token = fake.slash(channel, person, "link", &[("code", code)])?;
    let (answer, shown) = fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.ephemeral && !shown.content.starts_with('⚠'),
        "`/link CODE` answered {:?}",
        shown.content
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_resumes_and_continues_a_web_reply() -> Result<()> {
    let text = script(60);
    let world = DiscordWorld::start(&text, 6.0, "").await?;
    let web = logged_in_client(&world.server, &unique_name("web")).await?;
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

    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    link(&web, &world.fake, dm, &alice).await?;

    // `/resume` offers the web conversation in a menu only alice sees.
    let token = world.fake.slash(dm, &alice, "resume", &[])?;
    let (answer, menu) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(answer.ephemeral, "the resume menu is public");
    let option = &menu.components[0]["components"][0]["options"][0];
    ensure!(
        option["value"] == conversation.as_str(),
        "the menu's first choice is {option}, not the web conversation {conversation}"
    );
    let token = world
        .fake
        .select(menu.id, &alice, "chorus:resume", &conversation)?;
    world.fake.answer_of(&token, WAIT).await?;
    let shown = world
        .fake
        .wait("the resumed reply with its partial text", WAIT, |st| {
            st.bot_messages(dm)
                .into_iter()
                .find(|m| m.content.starts_with(&partial) && m.content.contains("Stopped"))
        })
        .await?;
    ensure!(
        shown.buttons() == ["chorus:continue", "chorus:regenerate"],
        "the resumed stopped reply offers {:?}",
        shown.buttons()
    );
    let token = world.fake.press(shown.id, &alice, "chorus:continue")?;
    world.fake.answer_of(&token, WAIT).await?;
    let done = world
        .fake
        .wait("the resumed reply finished in place", WAIT, |st| {
            st.messages
                .get(&shown.id)
                .filter(|m| m.content == text)
                .cloned()
        })
        .await?;
    ensure!(done.id == shown.id);

    let messages = web.messages(&conversation).await?;
    let assistant = only_assistant(&messages)?;
    ensure!(
        s(assistant, "content") == text,
        "the web shows {:?}",
        assistant["content"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_reply_of_a_killed_bot_continues_on_the_web() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let text = script(80);
    let shared = ServerConfig::new()
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix())
        .lease_ttl_secs(3)
        .checkpoint_interval_ms(200)
        .scripted("s", &text, 6.0);
    // A runs the Discord bot (and the web); B only the web.
    let mut world = DiscordWorld::start_with(shared.clone().instance_id("dc-a"), "").await?;
    let b = TestServer::start(shared.instance_id("dc-b")).await?;
    let web = logged_in_client(&b, &unique_name("web")).await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    link(&web, &world.fake, dm, &alice).await?;

    world.fake.say(dm, &alice, "a long one, please", false)?;
    let first = world.wait_partial(dm, 0, 40).await?;
    world.server.kill_9()?;

    let conversation = until("the Discord conversation on the web", WAIT, || async {
        let list: Value = web.get("/api/conversations").await?.json().await?;
        Ok(list["conversations"]
            .as_array()
            .and_then(|c| c.first())
            .map(|c| s(c, "id").to_string()))
    })
    .await?;
    let run = until("the Discord reply's run on the web", WAIT, || async {
        let messages = web.messages(&conversation).await?;
        Ok(messages
            .iter()
            .find(|m| m["role"] == "assistant")
            .map(|m| s(m, "run_id").to_string()))
    })
    .await?;
    until("the run to be interrupted", WAIT, || async {
        let view = web.run(&run).await?;
        Ok((s(&view, "status") == "interrupted").then_some(()))
    })
    .await?;
    let continuation = web.continue_run(&run).await?;
    let ended = web.wait_run_ended(&continuation, WAIT).await?;
    ensure!(s(&ended, "status") == "complete", "{ended}");

    // The bot comes back and finishes the Discord message it had started.
    world.server.restart().await?;
    let done = world.wait_text(dm, 0, &text).await?;
    ensure!(done.id == first.id, "finished in another message");
    ensure!(
        world.fake.lock().bot_messages(dm).len() == 1,
        "the restart posted another message"
    );
    Ok(())
}
