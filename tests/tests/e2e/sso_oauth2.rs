//! OAuth2 logins with Discord and GitHub (not OpenID Connect), against local fakes of
//! their documented endpoints: the identity is the platform's user id (the one its bot
//! sees), a second login reuses the account, both logins prove PKCE, and a new
//! account gets `accounts.default_role`.

use anyhow::{Result, ensure};
use chorus_tests::fake_discord::FakeDiscord;
use chorus_tests::fake_github::FakeGithub;
use chorus_tests::sso_browser::{SsoBrowser, with_query};
use chorus_tests::{ServerConfig, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn config(tables: &str) -> ServerConfig {
    ServerConfig::new().raw_toml(&format!("[auth]\npublic_url = \"@SERVER_URL@\"\n{tables}"))
}

/// Follows start → provider (which consents at once) → callback.
async fn login(browser: &SsoBrowser, provider: &str) -> Result<()> {
    let authorize = browser.start(provider).await?;
    let callback = browser.follow(authorize.as_str()).await?;
    let home = browser.follow(callback.as_str()).await?;
    ensure!(home.path() == "/", "{home}");
    Ok(())
}

fn find<'a>(list: &'a Value, platform: &str) -> Option<&'a Value> {
    list["identities"]
        .as_array()?
        .iter()
        .find(|i| i["platform"] == platform)
}

#[tokio::test]
async fn discord_login_links_the_discord_user_id() -> Result<()> {
    let discord = FakeDiscord::start("1111222233334444", "discord-secret").await?;
    discord.set_user(json!({
        "id": "80351110224678912", "username": "nelly", "discriminator": "0",
        "global_name": "Nelly", "avatar": null, "email": "nelly@example.com", "verified": true
    }));
    let server = TestServer::start(config(&discord.config_toml("discord"))).await?;
    let browser = SsoBrowser::new(&server.url());
    let (_, providers) = browser.api_get("/api/auth/providers").await?;
    ensure!(
        providers["providers"][0]["kind"] == "discord",
        "{providers}"
    );

    // A forged state is refused before any code exchange.
    let authorize = browser.start("discord").await?;
    ensure!(
        authorize
            .query_pairs()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256"),
        "no PKCE challenge in {authorize}"
    );
    let callback = browser.follow(authorize.as_str()).await?;
    let forged = with_query(&callback, "state", "not-the-state");
    let body = browser
        .expect_error(forged.as_str(), StatusCode::BAD_REQUEST)
        .await?;
    ensure!(body["error"]["code"] == "sso_state_mismatch", "{body}");

    let home = browser.follow(callback.as_str()).await?;
    ensure!(home.path() == "/", "{home}");
    ensure!(
        discord.pkce_verified(),
        "the code exchange proved no PKCE verifier"
    );
    let (status, me) = browser.api_get("/api/me").await?;
    ensure!(
        status == StatusCode::OK && me["name"] == "nelly",
        "{status} {me}"
    );
    let (_, list) = browser.api_get("/api/me/identities").await?;
    let identity = find(&list, "discord").cloned().unwrap_or_default();
    ensure!(identity["external_id"] == "80351110224678912", "{list}");
    ensure!(identity["label"] == "nelly", "{list}");

    let again = SsoBrowser::new(&server.url());
    login(&again, "discord").await?;
    let (_, me2) = again.api_get("/api/me").await?;
    ensure!(me2["id"] == me["id"], "{me2} vs {me}");
    Ok(())
}

#[tokio::test]
async fn a_new_sso_account_gets_the_default_role() -> Result<()> {
    let discord = FakeDiscord::start("1111222233334444", "discord-secret").await?;
    discord.set_user(json!({
        "id": "80351110224678913", "username": "olive", "discriminator": "0",
        "global_name": null, "avatar": null, "email": null, "verified": false
    }));
    let server = TestServer::start(config(&format!(
        "{}[accounts]\ndefault_role = \"admin\"\n",
        discord.config_toml("discord")
    )))
    .await?;
    let browser = SsoBrowser::new(&server.url());
    login(&browser, "discord").await?;
    let (_, me) = browser.api_get("/api/me").await?;
    ensure!(
        me["name"] == "olive" && me["role"] == "admin",
        "the new account is not of accounts.default_role: {me}"
    );
    Ok(())
}

#[tokio::test]
async fn github_login_uses_pkce_and_the_numeric_user_id() -> Result<()> {
    let github = FakeGithub::start("Iv1.abcdef", "github-secret").await?;
    github.set_user(
        json!({"login": "octocat", "id": 583231, "name": "The Octocat", "email": null}),
        json!([
            {"email": "octocat@users.noreply.github.com", "primary": false, "verified": true, "visibility": null},
            {"email": "octocat@example.com", "primary": true, "verified": true, "visibility": "public"}
        ]),
    );
    let server = TestServer::start(config(&format!(
        "{}{}",
        github.config_toml("github", "allowed_email_domains = [\"example.com\"]"),
        github.config_toml(
            "github-strict",
            "allowed_email_domains = [\"corp.example\"]"
        )
    )))
    .await?;
    let browser = SsoBrowser::new(&server.url());
    let authorize = browser.start("github").await?;
    ensure!(
        authorize
            .query_pairs()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256"),
        "no PKCE challenge in {authorize}"
    );
    let callback = browser.follow(authorize.as_str()).await?;
    let home = browser.follow(callback.as_str()).await?;
    ensure!(home.path() == "/", "{home}");
    ensure!(
        github.pkce_verified(),
        "the code exchange did not prove PKCE"
    );
    let (_, me) = browser.api_get("/api/me").await?;
    ensure!(me["name"] == "octocat", "{me}");
    let (_, list) = browser.api_get("/api/me/identities").await?;
    ensure!(
        find(&list, "github").is_some_and(|i| i["external_id"] == "583231"),
        "{list}"
    );

    // No verified address of the allowed domain: refused, no session.
    let strict = SsoBrowser::new(&server.url());
    let authorize = strict.start("github-strict").await?;
    let callback = strict.follow(authorize.as_str()).await?;
    let body = strict
        .expect_error(callback.as_str(), StatusCode::FORBIDDEN)
        .await?;
    ensure!(body["error"]["code"] == "sso_email_not_allowed", "{body}");
    let (status, _) = strict.api_get("/api/me").await?;
    ensure!(status == StatusCode::UNAUTHORIZED);
    Ok(())
}
