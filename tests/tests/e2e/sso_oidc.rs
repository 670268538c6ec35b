//! OpenID Connect login against a real third-party provider (`oidc-provider-mock` from
//! PyPI) on loopback, driven like a browser: Chorus's start redirect, the provider's
//! login form, the redirect back to Chorus's callback. The failure cases tamper with
//! one thing each — the state Chorus gets back, the nonce the provider signs, the
//! time the ID token reaches Chorus, the issuer Chorus was told about — and must end
//! with a clear error, no session and no account.

use anyhow::{Result, ensure};
use chorus_tests::oidc_provider::{OidcInterceptor, OidcProvider, Tamper};
use chorus_tests::sso_browser::{SsoBrowser, with_query};
use chorus_tests::{PASSWORD, ServerConfig, TestDatabase, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const CLIENT: &str = "client_id = \"chorus-test\"\nclient_secret = \"chorus-test-secret\"\n";

/// One `[[auth.oidc]]` table.
fn oidc_table(id: &str, issuer: &str, extra: &str) -> String {
    format!(
        "[[auth.oidc]]\nid = \"{id}\"\nname = \"Mock {id}\"\nissuer = \"{issuer}\"\n{CLIENT}{extra}\n"
    )
}

/// A server with `[auth]` settings `auth_extra` and the given provider tables.
fn config(auth_extra: &str, tables: &[String]) -> ServerConfig {
    ServerConfig::new().raw_toml(&format!(
        "[auth]\npublic_url = \"@SERVER_URL@\"\n{auth_extra}\n{}",
        tables.concat()
    ))
}

/// The accounts besides `admin`, the one a server's first start creates.
async fn account_count(db: &TestDatabase) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE name <> 'admin'")
            .fetch_one(&db.pool().await?)
            .await?,
    )
}

async fn assert_no_session(browser: &SsoBrowser) -> Result<()> {
    let (status, body) = browser.api_get("/api/me").await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "a session exists: {status} {body}"
    );
    Ok(())
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase()
}

#[tokio::test]
async fn oidc_login_creates_account_with_identity_and_second_login_reuses_it() -> Result<()> {
    let provider = OidcProvider::start(
        3600,
        &[
            json!({"sub": "alice-sub-1", "email": "alice@example.com", "email_verified": true,
                 "preferred_username": "alice", "groups": ["staff", "chorus-admins"]}),
        ],
    )
    .await?;
    let db = TestDatabase::create().await?;
    let server = TestServer::start(config("", &[oidc_table(
        "mock",
        &provider.issuer(),
        "allowed_email_domains = [\"example.com\"]\nadmin_claim = \"groups\"\nadmin_value = \"chorus-admins\"\n",
    )])
    .postgres(db.url()))
    .await?;

    // The login page learns the provider without logging in.
    let browser = SsoBrowser::new(&server.url());
    let (status, providers) = browser.api_get("/api/auth/providers").await?;
    ensure!(status == StatusCode::OK, "{status} {providers}");
    ensure!(providers["local_passwords"] == true, "{providers}");
    ensure!(
        providers["providers"] == json!([{"id": "mock", "name": "Mock mock", "kind": "oidc"}]),
        "{providers}"
    );

    // The authorization request carries state, nonce and a PKCE S256 challenge.
    let authorize = browser.start("mock").await?;
    ensure!(
        authorize.as_str().starts_with(&provider.issuer()),
        "{authorize}"
    );
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    for key in ["state", "nonce", "code_challenge"] {
        ensure!(
            query.get(key).is_some_and(|v| v.len() >= 16),
            "no {key} in {authorize}"
        );
    }
    ensure!(query["code_challenge_method"] == "S256", "{authorize}");
    ensure!(query["redirect_uri"] == format!("{}/api/auth/sso/mock/callback", server.url()));
    let callback = browser.provider_login(&authorize, "alice-sub-1").await?;
    let home = browser.follow(callback.as_str()).await?;
    ensure!(home.path() == "/", "{home}");

    let (status, me) = browser.api_get("/api/me").await?;
    ensure!(status == StatusCode::OK, "{status} {me}");
    ensure!(me["name"] == "alice", "{me}");
    ensure!(
        me["role"] == "admin",
        "the groups claim did not make an admin: {me}"
    );
    let account_id = me["id"].as_str().unwrap_or_default().to_string();

    let (_, identities) = browser.api_get("/api/me/identities").await?;
    let list = identities["identities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        list.iter().any(|i| i["platform"] == "oidc:mock"
            && i["external_id"] == "alice-sub-1"
            && i["label"] == "alice@example.com"
            && i["can_log_in"] == true),
        "{identities}"
    );
    let row: (String, String) = sqlx::query_as(
        "SELECT account_id, external_id FROM identities WHERE platform = 'oidc:mock'",
    )
    .fetch_one(&db.pool().await?)
    .await?;
    ensure!(
        row == (account_id.clone(), "alice-sub-1".to_string()),
        "{row:?}"
    );

    // The session works for the rest of the API.
    let (status, _) = browser.api_get("/api/conversations").await?;
    ensure!(status == StatusCode::OK, "{status}");

    // A second login, from another browser, lands in the same account.
    let other = SsoBrowser::new(&server.url());
    other.oidc_login("mock", "alice-sub-1").await?;
    let (_, me2) = other.api_get("/api/me").await?;
    ensure!(me2["id"] == account_id.as_str(), "{me2} vs {account_id}");
    ensure!(
        account_count(&db).await? == 1,
        "a second account was created"
    );
    Ok(())
}

#[tokio::test]
async fn oidc_wrong_state_is_refused_and_a_flow_is_single_use() -> Result<()> {
    let provider = OidcProvider::start(3600, &[]).await?;
    let db = TestDatabase::create().await?;
    let server = TestServer::start(
        config("", &[oidc_table("mock", &provider.issuer(), "")]).postgres(db.url()),
    )
    .await?;
    let browser = SsoBrowser::new(&server.url());
    let authorize = browser.start("mock").await?;
    let callback = browser.provider_login(&authorize, "mallory").await?;

    // A state other than the one this browser started with.
    let forged = with_query(&callback, "state", "forged-state-value-0123456789");
    let body = browser
        .expect_error(forged.as_str(), StatusCode::BAD_REQUEST)
        .await?;
    ensure!(error_code(&body) == "sso_state_mismatch", "{body}");
    ensure!(error_message(&body).contains("state"), "{body}");
    // The right callback URL opened in another browser (login CSRF) is refused too.
    let elsewhere = SsoBrowser::new(&server.url());
    let body = elsewhere
        .expect_error(callback.as_str(), StatusCode::BAD_REQUEST)
        .await?;
    ensure!(error_code(&body) == "sso_state_mismatch", "{body}");
    assert_no_session(&browser).await?;
    assert_no_session(&elsewhere).await?;
    ensure!(account_count(&db).await? == 0, "an account was created");

    // The genuine callback still works once, and only once.
    let home = browser.follow(callback.as_str()).await?;
    ensure!(home.path() == "/", "{home}");
    // Replayed: the state cookie is gone and the server forgot the flow.
    let body = browser
        .expect_error(callback.as_str(), StatusCode::BAD_REQUEST)
        .await?;
    ensure!(error_code(&body).starts_with("sso_"), "{body}");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sso_flows")
        .fetch_one(&db.pool().await?)
        .await?;
    ensure!(pending == 0, "the used flow is still stored");
    ensure!(account_count(&db).await? == 1);
    Ok(())
}

#[tokio::test]
async fn oidc_wrong_nonce_is_refused() -> Result<()> {
    let provider = OidcProvider::start(3600, &[]).await?;
    let db = TestDatabase::create().await?;
    let server = TestServer::start(
        config("", &[oidc_table("mock", &provider.issuer(), "")]).postgres(db.url()),
    )
    .await?;
    let browser = SsoBrowser::new(&server.url());
    let authorize = browser.start("mock").await?;
    // The provider signs whatever nonce the authorization request carries: replacing
    // it makes a correctly signed ID token whose nonce Chorus never issued.
    let tampered = with_query(&authorize, "nonce", "a-nonce-chorus-never-issued");
    let callback = browser.provider_login(&tampered, "mallory").await?;
    let body = browser
        .expect_error(callback.as_str(), StatusCode::UNAUTHORIZED)
        .await?;
    ensure!(error_code(&body) == "sso_invalid_id_token", "{body}");
    ensure!(error_message(&body).contains("nonce"), "{body}");
    assert_no_session(&browser).await?;
    ensure!(account_count(&db).await? == 0, "an account was created");
    Ok(())
}

#[tokio::test]
async fn oidc_expired_id_token_is_refused() -> Result<()> {
    // Tokens live one second; the interceptor holds the token response for three.
    let provider = OidcProvider::start(1, &[]).await?;
    let proxy = OidcInterceptor::start(
        &provider.issuer(),
        Tamper::DelayTokenResponse(Duration::from_secs(3)),
    )
    .await?;
    let db = TestDatabase::create().await?;
    let server =
        TestServer::start(config("", &[oidc_table("mock", &proxy.url(), "")]).postgres(db.url()))
            .await?;
    let browser = SsoBrowser::new(&server.url());
    let authorize = browser.start("mock").await?;
    ensure!(authorize.as_str().starts_with(&proxy.url()), "{authorize}");
    let callback = browser.provider_login(&authorize, "mallory").await?;
    let body = browser
        .expect_error(callback.as_str(), StatusCode::UNAUTHORIZED)
        .await?;
    ensure!(error_code(&body) == "sso_invalid_id_token", "{body}");
    ensure!(error_message(&body).contains("expired"), "{body}");
    assert_no_session(&browser).await?;
    ensure!(account_count(&db).await? == 0, "an account was created");
    Ok(())
}

#[tokio::test]
async fn oidc_issuer_mismatch_is_refused() -> Result<()> {
    let provider = OidcProvider::start(3600, &[]).await?;
    // Chorus is configured with (and discovers) the interceptor as issuer; the
    // provider's tokens name the provider itself.
    let proxy = OidcInterceptor::start(&provider.issuer(), Tamper::IssuerIsProxy).await?;
    let db = TestDatabase::create().await?;
    let server =
        TestServer::start(config("", &[oidc_table("mock", &proxy.url(), "")]).postgres(db.url()))
            .await?;
    let browser = SsoBrowser::new(&server.url());
    let authorize = browser.start("mock").await?;
    let callback = browser.provider_login(&authorize, "mallory").await?;
    let body = browser
        .expect_error(callback.as_str(), StatusCode::UNAUTHORIZED)
        .await?;
    ensure!(error_code(&body) == "sso_invalid_id_token", "{body}");
    ensure!(error_message(&body).contains("issuer"), "{body}");
    assert_no_session(&browser).await?;
    ensure!(account_count(&db).await? == 0, "an account was created");
    Ok(())
}

#[tokio::test]
async fn unknown_provider_and_disallowed_email_are_refused() -> Result<()> {
    let provider = OidcProvider::start(
        3600,
        &[
            json!({"sub": "eve", "email": "eve@evil.example.org", "email_verified": true}),
            // The right domain, but the provider never checked the address.
            json!({"sub": "mallory", "email": "mallory@example.com"}),
            json!({"sub": "trudy", "email": "trudy@example.com", "email_verified": false}),
        ],
    )
    .await?;
    let db = TestDatabase::create().await?;
    let server = TestServer::start(
        config(
            "",
            &[oidc_table(
                "mock",
                &provider.issuer(),
                "allowed_email_domains = [\"example.com\"]\n",
            )],
        )
        .postgres(db.url()),
    )
    .await?;
    let browser = SsoBrowser::new(&server.url());
    for path in [
        "/api/auth/sso/nope/callback?code=abc&state=def",
        "/api/auth/sso/nope/start",
    ] {
        let body = browser
            .expect_error(&browser.url(path), StatusCode::NOT_FOUND)
            .await?;
        ensure!(error_message(&body).contains("\"nope\""), "{body}");
    }
    // A browser navigation gets the chat client with the message instead of JSON.
    for path in [
        "/api/auth/sso/nope/callback?code=abc&state=def",
        "/api/auth/sso/nope/start",
    ] {
        let r = browser
            .raw()
            .get(browser.url(path))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await?;
        ensure!(r.status() == StatusCode::SEE_OTHER, "{}", r.status());
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        ensure!(
            location.starts_with("/?sso_error=") && location.contains("nope"),
            "{location}"
        );
    }

    let authorize = browser.start("mock").await?;
    let callback = browser.provider_login(&authorize, "eve").await?;
    let body = browser
        .expect_error(callback.as_str(), StatusCode::FORBIDDEN)
        .await?;
    ensure!(error_code(&body) == "sso_email_not_allowed", "{body}");
    ensure!(error_message(&body).contains("evil.example.org"), "{body}");
    assert_no_session(&browser).await?;
    for sub in ["mallory", "trudy"] {
        let authorize = browser.start("mock").await?;
        let callback = browser.provider_login(&authorize, sub).await?;
        let body = browser
            .expect_error(callback.as_str(), StatusCode::FORBIDDEN)
            .await?;
        ensure!(
            error_code(&body) == "sso_email_not_allowed",
            "{sub}: {body}"
        );
        ensure!(
            error_message(&body).contains("not verified"),
            "{sub}: {body}"
        );
        assert_no_session(&browser).await?;
    }
    ensure!(account_count(&db).await? == 0);
    Ok(())
}

#[tokio::test]
async fn disabled_local_passwords_refuse_password_login_but_not_sso_or_the_cli() -> Result<()> {
    let provider = OidcProvider::start(3600, &[]).await?;
    let server = TestServer::start(config(
        "local_passwords = false\n",
        &[oidc_table("mock", &provider.issuer(), "")],
    ))
    .await?;
    // The admin CLI still creates accounts.
    server.create_user("carol", PASSWORD).await?;
    let browser = SsoBrowser::new(&server.url());
    let (status, body) = browser
        .api_post(
            "/api/auth/login",
            &json!({"name": "carol", "password": PASSWORD}),
        )
        .await?;
    ensure!(status == StatusCode::FORBIDDEN, "{status} {body}");
    ensure!(error_code(&body) == "local_login_disabled", "{body}");
    ensure!(error_message(&body).contains("single sign-on"), "{body}");
    assert_no_session(&browser).await?;
    let (_, providers) = browser.api_get("/api/auth/providers").await?;
    ensure!(providers["local_passwords"] == false, "{providers}");
    browser.oidc_login("mock", "dave").await?;
    let (status, me) = browser.api_get("/api/me").await?;
    ensure!(
        status == StatusCode::OK && me["name"] == "dave",
        "{status} {me}"
    );
    Ok(())
}

#[tokio::test]
async fn identities_link_and_unlink_keep_a_way_in() -> Result<()> {
    let provider = OidcProvider::start(3600, &[]).await?;
    let server = TestServer::start(config(
        "",
        &[
            oidc_table("one", &provider.issuer(), ""),
            oidc_table("two", &provider.issuer(), ""),
        ],
    ))
    .await?;

    // An account made by SSO has no password: its one SSO identity cannot go.
    let sso_user = SsoBrowser::new(&server.url());
    sso_user.oidc_login("one", "frank").await?;
    let (_, me) = sso_user.api_get("/api/me").await?;
    let identity = |list: &Value, platform: &str| -> String {
        list["identities"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["platform"] == platform))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (_, list) = sso_user.api_get("/api/me/identities").await?;
    let one = identity(&list, "oidc:one");
    ensure!(!one.is_empty(), "{list}");
    let (status, body) = sso_user
        .api_delete(&format!("/api/me/identities/{one}"))
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && error_code(&body) == "last_way_in",
        "{status} {body}"
    );

    // Starting SSO while logged in links the second identity to the same account.
    sso_user.oidc_login("two", "frank-at-two").await?;
    let (_, me_after) = sso_user.api_get("/api/me").await?;
    ensure!(
        me_after["id"] == me["id"],
        "linking changed the account: {me_after}"
    );
    let (_, list) = sso_user.api_get("/api/me/identities").await?;
    let two = identity(&list, "oidc:two");
    ensure!(
        !two.is_empty(),
        "the second identity was not linked: {list}"
    );

    // Another account's identity id is not found, and stays linked.
    let local = SsoBrowser::new(&server.url());
    server.create_user("grace", PASSWORD).await?;
    let (status, _) = local
        .api_post(
            "/api/auth/login",
            &json!({"name": "grace", "password": PASSWORD}),
        )
        .await?;
    ensure!(status == StatusCode::OK);
    let (status, body) = local
        .api_delete(&format!("/api/me/identities/{one}"))
        .await?;
    ensure!(status == StatusCode::NOT_FOUND, "{status} {body}");
    let (status, _) = local.api_delete("/api/me/identities/not-an-id!").await?;
    ensure!(status == StatusCode::NOT_FOUND);

    // With two ways in, one can go; then the last cannot.
    let (status, body) = sso_user
        .api_delete(&format!("/api/me/identities/{one}"))
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status} {body}");
    let (status, body) = sso_user
        .api_delete(&format!("/api/me/identities/{two}"))
        .await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");

    // A password account links an identity and may unlink it (the password remains),
    // but not its local login.
    local.oidc_login("one", "grace-sso").await?;
    let (_, list) = local.api_get("/api/me/identities").await?;
    let linked = identity(&list, "oidc:one");
    let web = identity(&list, "web");
    ensure!(!linked.is_empty() && !web.is_empty(), "{list}");
    let (status, body) = local
        .api_delete(&format!("/api/me/identities/{web}"))
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    let (status, body) = local
        .api_delete(&format!("/api/me/identities/{linked}"))
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status} {body}");
    // An identity linked to one account cannot be linked to another.
    let (status, _) = sso_user.api_get("/api/me").await?;
    ensure!(status == StatusCode::OK);
    let authorize = local.start("two").await?;
    let callback = local.provider_login(&authorize, "frank-at-two").await?;
    let body = local
        .expect_error(callback.as_str(), StatusCode::CONFLICT)
        .await?;
    ensure!(error_code(&body) == "identity_linked_elsewhere", "{body}");
    Ok(())
}

#[tokio::test]
async fn slack_oidc_links_the_slack_user_id() -> Result<()> {
    // "Sign in with Slack" puts the Slack user id in its own claim.
    let provider = OidcProvider::start(
        3600,
        &[
            json!({"sub": "slack-sub-9", "https://slack.com/user_id": "U0123ABCD",
                 "https://slack.com/team_id": "T0001", "email": "sam@example.com", "name": "Sam"}),
        ],
    )
    .await?;
    let server = TestServer::start(config(
        "",
        &[oidc_table(
            "slack",
            &provider.issuer(),
            "kind = \"slack\"\n",
        )],
    ))
    .await?;
    let browser = SsoBrowser::new(&server.url());
    let (_, providers) = browser.api_get("/api/auth/providers").await?;
    ensure!(providers["providers"][0]["kind"] == "slack", "{providers}");
    browser.oidc_login("slack", "slack-sub-9").await?;
    let (_, list) = browser.api_get("/api/me/identities").await?;
    let slack = list["identities"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["platform"] == "slack"))
        .cloned()
        .unwrap_or_default();
    ensure!(slack["external_id"] == "U0123ABCD", "{list}");
    ensure!(slack["label"] == "sam@example.com", "{list}");
    Ok(())
}
