//! What is one person's stays theirs: `/link` and `/usage` are answered ephemerally
//! (never in the channel), the code works on the web, and the allowlist keeps others
//! out (ignored in messages, refused ephemerally in commands).

use crate::discord_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::fake_discord_bot::{CHANNEL_ID, Person};
use chorus_tests::{PASSWORD, logged_in_client, script, unique_name};
use reqwest::Method;
use serde_json::{Value, json};

/// The link code in a text (`ABCD-EFGH`).
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_link_and_usage_are_ephemeral_and_the_code_works_on_the_web() -> Result<()> {
    let world = DiscordWorld::start("Fine.", 50.0, "").await?;
    let alice = alice();
    // A conversation of alice's, to find on the web once linked.
    let thread = world.fake.say(CHANNEL_ID, &alice, "Alice's plans", true)?;
    world.wait_text(thread, 0, "Fine.").await?;

    let token = world.fake.slash(CHANNEL_ID, &alice, "link", &[])?;
    let (answer, shown) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.callback == Some(5) && answer.ephemeral && shown.ephemeral,
        "{answer:?}"
    );
    let code =
        code_in(&shown.content).with_context(|| format!("no code in {:?}", shown.content))?;
    let token = world.fake.slash(CHANNEL_ID, &alice, "usage", &[])?;
    let (answer, usage) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.ephemeral && usage.ephemeral,
        "/usage answered publicly: {usage:?}"
    );
    {
        let s = world.fake.lock();
        for channel in [CHANNEL_ID, thread] {
            let leaked: Vec<_> = s
                .public_messages(channel)
                .into_iter()
                .filter(|m| m.content.contains(&code) || m.content == usage.content)
                .collect();
            ensure!(leaked.is_empty(), "private text in a channel: {leaked:?}");
        }
    }

    let name = unique_name("web");
    let web = logged_in_client(&world.server, &name).await?;
    let redeemed = web
        .request(Method::POST, "/api/link-codes/redeem")
        .json(&json!({ "code": code }))
        .send()
        .await?;
    ensure!(
        redeemed.status() == 200,
        "redeeming: {} {}",
        redeemed.status(),
        redeemed.text().await?
    );
    let web = world.server.client();
    web.login(&name, PASSWORD).await?;
    let list: Value = web.get("/api/conversations").await?.json().await?;
    let titles: Vec<_> = list["conversations"]
        .as_array()
        .with_context(|| format!("no conversations: {list}"))?
        .iter()
        .filter_map(|c| c["title"].as_str())
        .collect();
    ensure!(
        titles.contains(&"Alice's plans"),
        "the linked web account lists {titles:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_allowlist_ignores_and_refuses_others() -> Result<()> {
    let text = script(10);
    let alice = alice();
    let world =
        DiscordWorld::start(&text, 40.0, &format!("allowed_users = [\"{}\"]", alice.id)).await?;
    let mallory = Person::new(100_000_000_000_000_666, "mallory");
    let mallory_dm = world.fake.dm_channel(&mallory);
    world.fake.say(mallory_dm, &mallory, "hello?", false)?;
    world.fake.say(CHANNEL_ID, &mallory, "hey bot", true)?;
    let token = world
        .fake
        .slash(CHANNEL_ID, &mallory, "ask", &[("question", "hi")])?;
    let (answer, refusal) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.callback == Some(4) && answer.ephemeral && refusal.content.contains("not allowed"),
        "mallory's /ask: {answer:?} {refusal:?}"
    );
    // Alice, listed, is answered; by then mallory's messages (sent first) were handled.
    let dm = world.fake.dm_channel(&alice);
    world.fake.say(dm, &alice, "hello", false)?;
    world.wait_text(dm, 0, &text).await?;
    let s = world.fake.lock();
    ensure!(
        s.bot_messages(mallory_dm).is_empty(),
        "mallory got an answer in her DM"
    );
    ensure!(
        s.threads(CHANNEL_ID).is_empty(),
        "a thread opened for mallory"
    );
    ensure!(
        s.bot_messages(CHANNEL_ID)
            .iter()
            .all(|m| m.ephemeral || m.interaction.is_some())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_malformed_interactions_get_an_ephemeral_error() -> Result<()> {
    let text = script(5);
    let world = DiscordWorld::start(&text, 40.0, "").await?;
    let alice = alice();
    let unknown = world.fake.slash(CHANNEL_ID, &alice, "frobnicate", &[])?;
    let (answer, error) = world.fake.answer_of(&unknown, WAIT).await?;
    ensure!(
        answer.ephemeral && error.content.contains("/frobnicate"),
        "{error:?}"
    );
    let missing = world.fake.slash(CHANNEL_ID, &alice, "ask", &[])?;
    let (answer, error) = world.fake.answer_of(&missing, WAIT).await?;
    ensure!(
        answer.ephemeral && error.content.contains("question"),
        "{error:?}"
    );
    // A payload serenity cannot read is dropped; the bot goes on.
    world
        .fake
        .raw_interaction(CHANNEL_ID, &alice, 2, json!({"name": 5}))?;
    let dm = world.fake.dm_channel(&alice);
    world.fake.say(dm, &alice, "still there?", false)?;
    world.wait_text(dm, 0, &text).await?;
    Ok(())
}
