//! One account with no link code: a person who signed in to the web with Slack
//! ("Sign in with Slack", OpenID Connect, against a local provider that puts the
//! Slack user id in Slack's own claim) is the same account in the Slack app, because
//! both key the identity by the Slack user id. The conversation they start in the app
//! is in their web list, with its messages, and the balance the app reports is the
//! web's, a grant to the web account included.

use crate::slack_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::ServerConfig;
use chorus_tests::fake_slack::{self, fixtures};
use chorus_tests::oidc_provider::OidcProvider;
use chorus_tests::sso_browser::SsoBrowser;
use serde_json::{Value, json};

/// The app's balance line for `credits`, as `usage` writes it (six decimals at most,
/// no trailing zeros).
fn balance_line(credits: f64) -> String {
    let text = format!("{credits:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("Balance: {text} credits.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_login_with_slack_is_the_apps_account_without_a_link_code() -> Result<()> {
    let text = "Hello from the app, to the web too.";
    let provider = OidcProvider::start(
        3600,
        &[
            json!({"sub": "slack-sub-alice", "https://slack.com/user_id": ALICE,
                 "https://slack.com/team_id": fake_slack::TEAM,
                 "email": "alice@example.com", "name": "Alice"}),
        ],
    )
    .await?;
    let world = SlackWorld::start_with(
        ServerConfig::new()
            .scripted("s", text, 50.0)
            .raw_toml(&format!(
                "[auth]\npublic_url = \"@SERVER_URL@\"\n\
                 [[auth.oidc]]\nid = \"slack\"\nname = \"Slack\"\nissuer = \"{}\"\n\
                 client_id = \"chorus-test\"\nclient_secret = \"chorus-test-secret\"\nkind = \"slack\"\n",
                provider.issuer()
            )),
        SlackOptions::default(),
    )
    .await?;

    // The web: signed in with Slack, and granted some credits.
    let browser = SsoBrowser::new(&world.server.url());
    browser.oidc_login("slack", "slack-sub-alice").await?;
    let (status, me) = browser.api_get("/api/me").await?;
    ensure!(status == 200, "{status} {me}");
    let name = me["name"].as_str().context("no account name")?.to_string();
    world
        .server
        .cli(&["user", "grant", &name, "7.25"], None)
        .await?;

    // The app: Alice asks in her DM, with no link code ever issued.
    let ts = world.user_ts();
    let asked = fixtures::message_im(
        "EvWebLogin1",
        ALICE_DM,
        ALICE,
        &ts,
        None,
        "a question from Slack",
    );
    let envelope = world.slack.deliver("events_api", asked).await?;
    world.slack.wait_ack(&envelope, WAIT).await?;
    world.converged(ALICE_DM, None, text, ENDED).await?;

    // The conversation is in the web's list, with the question and the answer.
    let (_, list) = browser.api_get("/api/conversations").await?;
    let conversations = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        conversations.len() == 1,
        "the web lists {conversations:?} instead of the app's conversation"
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
        contents == ["a question from Slack", text],
        "the web shows {conversation}"
    );

    // One balance: `/chorus usage` in the app reports the web's (the grant included).
    let (_, usage) = browser.api_get("/api/me/usage").await?;
    let balance = usage["balance"].as_f64().context("no balance")?;
    ensure!(balance >= 7.25, "the grant is not in the balance: {usage}");
    world.command(ALICE, ALICE_DM, "usage").await?;
    let shown = world
        .slack
        .wait_until("Alice's usage, ephemeral", WAIT, |s| {
            s.ephemerals
                .iter()
                .find(|e| e.user == ALICE)
                .map(|e| e.text.clone())
        })
        .await?;
    ensure!(
        shown.starts_with(&balance_line(balance)),
        "`/chorus usage` in the app answered {shown:?}, where the web's balance is {balance}"
    );

    // The account has the one Slack identity, from the login.
    let (_, identities) = browser.api_get("/api/me/identities").await?;
    let slack: Vec<&Value> = identities["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["platform"] == "slack")
        .collect();
    ensure!(
        slack.len() == 1 && slack[0]["external_id"] == ALICE,
        "{identities}"
    );
    Ok(())
}
