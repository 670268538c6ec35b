//! What belongs to one person stays theirs in a group room: `!chorus link` answers in
//! the room that the code was sent privately, and sends it in a direct room with the
//! bot (the room never holds it; it works when redeemed on the web), and another
//! person's `!chorus new` in someone's thread is refused.

use crate::matrix_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::{PASSWORD, logged_in_client, unique_name};
use reqwest::Method;
use serde_json::{Value, json};

/// The link code in a text (`ABCD-EFGH`).
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_link_codes_go_privately_and_threads_stay_their_owners() -> Result<()> {
    let world = MatrixWorld::start("Fine.", 50.0, BotOptions::default()).await?;
    let bot = world.bot_id();
    let alice = world.human("alice").await?;
    let bob = world.human("bob").await?;
    let room = alice
        .create_room(&[bot, bob.user_id()], false, false)
        .await?;
    bob.join(&room).await?;
    alice.wait_joined(&room, bot, WAIT).await?;
    alice.wait_joined(&room, bob.user_id(), WAIT).await?;

    // Alice's thread; bob cannot rebind it to a conversation of his.
    let root = alice.send_text(&room, "!chorus new Alice's plans").await?;
    let started = alice.first_reply(&room, bot, &root, WAIT).await?;
    ensure!(started.text.contains("Alice's plans"), "{:?}", started.text);
    bob.send_in_thread(&room, &root, "!chorus new Mine now", None)
        .await?;
    let refused = bob
        .wait_until("the bot's answer to bob's `new`", &room, WAIT, |me| {
            me.replies(&room, bot, Some(&root)).into_iter().nth(1)
        })
        .await?;
    ensure!(
        refused.text.contains("another person's conversation"),
        "bob's `new` in alice's thread was not refused: {:?}",
        refused.text
    );

    // `link` in the group room: a notice there, the code in a direct room.
    let asked = alice.send_text(&room, "!chorus link").await?;
    let notice = alice.first_reply(&room, bot, &asked, WAIT).await?;
    ensure!(
        notice.text.contains("privately") && code_in(&notice.text).is_none(),
        "the room's answer to `link`: {:?}",
        notice.text
    );
    let direct = alice
        .wait_until("the bot's invitation to a direct room", &room, WAIT, |me| {
            me.client
                .invited_rooms()
                .into_iter()
                .map(|r| r.room_id().to_owned())
                .next()
        })
        .await?;
    alice.join(&direct).await?;
    let code = alice
        .wait_until("the link code in the direct room", &direct, WAIT, |me| {
            me.replies(&direct, bot, None)
                .into_iter()
                .find_map(|r| code_in(&r.text))
        })
        .await?;
    ensure!(direct != room);
    for (who, user) in [("alice", &alice), ("bob", &bob)] {
        let leaked: Vec<_> = user
            .seen()
            .into_iter()
            .filter(|m| m.room_id == room && m.body.contains(&code))
            .collect();
        ensure!(
            leaked.is_empty(),
            "{who} saw the code in the room: {leaked:?}"
        );
    }

    // The code joins a web account to alice's: logged in again, her conversation
    // shows there.
    let name = unique_name("web");
    let web = logged_in_client(&world.server, &name).await?;
    let redeemed = web
        .request(Method::POST, "/api/link-codes/redeem")
        .json(&json!({ "code": code }))
        .send()
        .await?;
    ensure!(
        redeemed.status() == 200,
        "redeeming the code on the web: {} {}",
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
