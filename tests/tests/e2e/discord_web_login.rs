//! One account with no link code: a person who signed in to the web with Discord
//! (OAuth2, against the fake Discord's login endpoints) is the same account in the
//! Discord bot, because both key the identity by the Discord user id. The
//! conversation they start in the bot is in their web list, with its messages, and the
//! balance the bot reports is the web's, a grant to the web account included.

use crate::discord_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::ServerConfig;
use chorus_tests::fake_discord::FakeDiscord;
use chorus_tests::fake_discord_bot::Person;
use chorus_tests::sso_browser::SsoBrowser;
use serde_json::{Value, json};

/// The bot's balance line for `credits`, as `/usage` writes it (six decimals at most,
/// no trailing zeros).
fn balance_line(credits: f64) -> String {
    let text = format!("{credits:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("Balance: {text} credits.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_login_with_discord_is_the_bots_account_without_a_link_code() -> Result<()> {
    let text = "Hello from the bot, to the web too.";
    let nelly = Person::new(100_000_000_000_000_077, "nelly");
    let oauth = FakeDiscord::start("1111222233334444", "discord-secret").await?;
    oauth.set_user(json!({
        "id": nelly.id.to_string(), "username": "nelly", "discriminator": "0",
        "global_name": "Nelly", "avatar": null, "email": "nelly@example.com", "verified": true
    }));
    let world = DiscordWorld::start_with(
        ServerConfig::new()
            .scripted("s", text, 50.0)
            .raw_toml(&format!(
                "[auth]\npublic_url = \"@SERVER_URL@\"\n{}",
                oauth.config_toml("discord")
            )),
        "",
    )
    .await?;

    // The web: signed in with Discord, and granted some credits.
    let browser = SsoBrowser::new(&world.server.url());
    let authorize = browser.start("discord").await?;
    let callback = browser.follow(authorize.as_str()).await?;
    browser.follow(callback.as_str()).await?;
    let (status, me) = browser.api_get("/api/me").await?;
    ensure!(status == 200, "{status} {me}");
    let name = me["name"].as_str().context("no account name")?.to_string();
    world
        .server
        .cli(&["user", "grant", &name, "7.25"], None)
        .await?;

    // The bot: Nelly asks in a DM, with no link code ever issued.
    let dm = world.fake.dm_channel(&nelly);
    world
        .fake
        .say(dm, &nelly, "a question from Discord", false)?;
    world.wait_text(dm, 0, text).await?;

    // The conversation is in the web's list, with the question and the answer.
    let (_, list) = browser.api_get("/api/conversations").await?;
    let conversations = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        conversations.len() == 1,
        "the web lists {conversations:?} instead of the bot's conversation"
    );
    let id = conversations[0]["id"].as_str().context("no id")?;
    let (_, conversation) = browser.api_get(&format!("/api/conversations/{id}")).await?;
    let contents: Vec<&str> = conversation["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .collect();
    ensure!(
        contents == ["a question from Discord", text],
        "the web shows {conversation}"
    );

    // One balance: the web's usage counts the bot's reply, and the bot's `/usage`
    // reports the web's balance (the grant included).
    let (_, usage) = browser.api_get("/api/me/usage").await?;
    let runs: i64 = usage["by_model"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["runs"].as_i64())
        .sum();
    ensure!(
        runs == 1,
        "the web's usage does not count the bot's reply: {usage}"
    );
    let balance = usage["balance"].as_f64().context("no balance")?;
    ensure!(balance >= 7.25, "the grant is not in the balance: {usage}");
    let token = world.fake.slash(dm, &nelly, "usage", &[])?;
    let (answer, shown) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.ephemeral && shown.content.starts_with(&balance_line(balance)),
        "`/usage` in the bot answered {:?}, where the web's balance is {balance}",
        shown.content
    );

    // Nothing asked for a link code, and the account has the one Discord identity.
    let (_, identities) = browser.api_get("/api/me/identities").await?;
    let discord: Vec<&Value> = identities["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["platform"] == "discord")
        .collect();
    ensure!(
        discord.len() == 1 && discord[0]["external_id"] == nelly.id.to_string().as_str(),
        "{identities}"
    );
    Ok(())
}
