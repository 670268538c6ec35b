//! The web API's guards, through the binary: a change made with the session cookie
//! must come from the server's own pages (API keys are not checked), slow requests
//! end with 503, an account's open event streams are capped, passwords can be
//! changed and every session ended, and a failed run does not show the provider's
//! address.

use crate::quota_support::{call, expect_error, expect_status};
use anyhow::{Context, Result, ensure};
use chorus_tests::{
    ApiClient, PASSWORD, Resume, ServerConfig, TestServer, logged_in_client, unique_name,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// Logs `name` in with a bare HTTP client; returns the session cookie (`name=value`).
async fn session_cookie(server: &TestServer, name: &str) -> Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/login", server.url()))
        .json(&json!({"name": name, "password": PASSWORD}))
        .send()
        .await?;
    ensure!(r.status() == StatusCode::OK, "login: {}", r.status());
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    Ok(cookie)
}

/// A request with the session cookie and the given extra headers.
fn with_cookie(
    server: &TestServer,
    method: Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut req = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
        .request(method, format!("{}{path}", server.url()))
        .header("cookie", cookie)
        .timeout(Duration::from_secs(30));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_changes_need_our_origin_and_api_keys_do_not() -> Result<()> {
    let server = TestServer::start(ServerConfig::new().scripted("s", "Hi.", 200.0)).await?;
    let name = unique_name("csrf");
    server.create_user(&name, PASSWORD).await?;
    let cookie = session_cookie(&server, &name).await?;
    let own = server.url();
    let evil = "https://evil.example";

    // Another site's page, a page that sends no origin at all, a sandboxed frame.
    for headers in [
        vec![("origin", evil)],
        vec![],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("referer", "https://evil.example/attack.html")],
    ] {
        for (method, path, body) in [
            (Method::POST, "/api/conversations", Some(json!({}))),
            // Body-less posts: a link code, a logout.
            (Method::POST, "/api/link-codes", None),
            (Method::POST, "/api/auth/logout", None),
            (Method::DELETE, "/api/me/sessions", None),
        ] {
            let mut req = with_cookie(&server, method.clone(), path, &cookie, &headers);
            if let Some(body) = body {
                req = req.json(&body);
            }
            expect_error(req.send().await?, 403, "cross_origin")
                .await
                .with_context(|| format!("{method} {path} with {headers:?}"))?;
        }
    }
    // Nothing happened: the session still works and made nothing.
    let me = with_cookie(&server, Method::GET, "/api/me", &cookie, &[]);
    expect_status(me.send().await?, 200).await?;
    let list = with_cookie(&server, Method::GET, "/api/conversations", &cookie, &[]);
    let list = expect_status(list.send().await?, 200).await?;
    ensure!(
        list["conversations"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );

    // From our own pages it works: by Origin, or a same-origin fetch's metadata.
    let create = with_cookie(
        &server,
        Method::POST,
        "/api/conversations",
        &cookie,
        &[("origin", &own)],
    );
    expect_status(create.json(&json!({})).send().await?, 201).await?;
    let code = with_cookie(
        &server,
        Method::POST,
        "/api/link-codes",
        &cookie,
        &[("sec-fetch-site", "same-origin")],
    );
    expect_status(code.send().await?, 201).await?;

    // Starting a link flow (a logged-in SSO start) is a change too; a logged-out
    // start is only a login. No provider is configured here, so a start that passes
    // the check is a 404 for the unknown provider.
    let start = |headers: Vec<(&'static str, &'static str)>, cookie: Option<String>| {
        let url = format!("{}/api/auth/sso/corp/start", server.url());
        async move {
            let mut req = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?
                .get(url);
            if let Some(cookie) = cookie {
                req = req.header("cookie", cookie);
            }
            for (name, value) in headers {
                req = req.header(name, value);
            }
            anyhow::Ok(req.send().await?)
        }
    };
    expect_error(
        start(vec![("sec-fetch-site", "cross-site")], Some(cookie.clone())).await?,
        403,
        "cross_origin",
    )
    .await?;
    expect_error(
        start(vec![], Some(cookie.clone())).await?,
        403,
        "cross_origin",
    )
    .await?;
    expect_error(
        start(
            vec![("sec-fetch-site", "same-origin")],
            Some(cookie.clone()),
        )
        .await?,
        404,
        "not_found",
    )
    .await?;
    expect_error(
        start(vec![("sec-fetch-site", "cross-site")], None).await?,
        404,
        "not_found",
    )
    .await?;

    // A login form on another site cannot log the browser in.
    let login = reqwest::Client::new()
        .post(format!("{}/api/auth/login", server.url()))
        .header("origin", evil)
        .json(&json!({"name": name, "password": PASSWORD}))
        .send()
        .await?;
    expect_error(login, 403, "cross_origin").await?;

    // An API key carries no ambient authority: no origin needed.
    let key = server.create_api_key(&name).await?;
    let script = ApiClient::with_api_key(&server.url(), &key);
    expect_status(
        call(&script, Method::POST, "/api/conversations", Some(json!({}))).await?,
        201,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_the_other_sessions_and_sign_out_ends_all() -> Result<()> {
    let server = TestServer::start(ServerConfig::new().scripted("s", "Hi.", 200.0)).await?;
    let name = unique_name("pw");
    let here = logged_in_client(&server, &name).await?;
    let elsewhere = server.client();
    elsewhere.login(&name, PASSWORD).await?;
    let new_password = "a brand new passphrase";

    let change = |client: &ApiClient, current: &str| {
        let (client, body) = (
            client.clone(),
            json!({"current_password": current, "new_password": new_password}),
        );
        async move { call(&client, Method::POST, "/api/me/password", Some(body)).await }
    };
    expect_error(
        change(&here, "not the password").await?,
        401,
        "invalid_credentials",
    )
    .await?;
    let short = call(
        &here,
        Method::POST,
        "/api/me/password",
        Some(json!({"current_password": PASSWORD, "new_password": "short"})),
    )
    .await?;
    expect_error(short, 400, "invalid_request").await?;
    let changed = expect_status(change(&here, PASSWORD).await?, 200).await?;
    ensure!(changed["sessions_ended"] == 1, "{changed}");
    // This browser stays in; the other session is over.
    here.me().await?;
    expect_error(elsewhere.get("/api/me").await?, 401, "session_expired").await?;
    // The old password is gone, the new one logs in.
    let old = server.client();
    ensure!(old.login(&name, PASSWORD).await.is_err());
    let fresh = server.client();
    fresh.login(&name, new_password).await?;

    // An API key may not change the password or end sessions.
    let key = server.create_api_key(&name).await?;
    let script = ApiClient::with_api_key(&server.url(), &key);
    expect_error(
        change(&script, new_password).await?,
        403,
        "session_required",
    )
    .await?;

    // Signing out everywhere ends both remaining sessions, this one included.
    let ended = expect_status(
        call(&here, Method::DELETE, "/api/me/sessions", None).await?,
        200,
    )
    .await?;
    ensure!(ended["sessions_ended"] == 2, "{ended}");
    // This browser's cookie is cleared; the other session is over on the server.
    expect_error(here.get("/api/me").await?, 401, "unauthenticated").await?;
    expect_error(fresh.get("/api/me").await?, 401, "session_expired").await?;
    // The key is not a session and still works.
    expect_status(script.get("/api/me").await?, 200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_may_hold_only_so_many_event_streams() -> Result<()> {
    // A reply slow enough to keep its stream open for the whole test.
    let text = "word ".repeat(400);
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &text, 4.0)
            .server_setting("max_streams_per_account", 2),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("streams")).await?;
    let conversation = client.create_conversation(None).await?;
    let run = client.send_message(&conversation, "go").await?.run_id;
    let first = client.events(&run, Resume::Start).await?;
    let _second = client.events(&run, Resume::Start).await?;
    let third = client.get(&format!("/api/runs/{run}/events")).await?;
    expect_error(third, 429, "too_many_streams").await?;
    // Another account is not affected.
    let other = logged_in_client(&server, &unique_name("other")).await?;
    let conversation = other.create_conversation(None).await?;
    let other_run = other.send_message(&conversation, "go").await?.run_id;
    let _theirs = other.events(&other_run, Resume::Start).await?;
    // A closed stream frees its slot (once the server notices the client left).
    drop(first);
    chorus_tests::wait::until("a stream slot to free up", Duration::from_secs(20), || {
        let client = client.clone();
        let run = run.clone();
        async move { Ok(client.events(&run, Resume::Start).await.ok()) }
    })
    .await?;
    client.stop(&run).await?;
    other.stop(&other_run).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_takes_too_long_ends_with_503() -> Result<()> {
    // An identity provider that accepts connections and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let issuer = format!("http://{}", black_hole.local_addr()?);
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", "Hi.", 200.0)
            .server_setting("request_timeout_secs", 1)
            .raw_toml(&format!(
                "[auth]\npublic_url = \"@SERVER_URL@\"\n[[auth.oidc]]\nid = \"slow\"\nname = \"Slow\"\n\
                 issuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
            )),
    )
    .await?;
    let started = std::time::Instant::now();
    let r = server.client().get("/api/auth/sso/slow/start").await?;
    let error = expect_error(r, 503, "timeout").await?;
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}: {error}",
        started.elapsed()
    );
    // Other requests are unaffected.
    expect_status(server.client().get("/api/auth/providers").await?, 200).await?;
    drop(black_hole);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_does_not_show_the_providers_address() -> Result<()> {
    // A provider on an internal address that refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = closed.local_addr()?.to_string();
    drop(closed);
    let server = TestServer::start(
        ServerConfig::new()
            .openai(
                "internal",
                &format!("http://{address}/v1"),
                "sk-test",
                &["m"],
            )
            .provider_setting("internal", "max_retries", 0),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("err")).await?;
    let conversation = client.create_conversation(Some("internal/m")).await?;
    let run = client.send_message(&conversation, "hello").await?.run_id;
    let view = client.wait_run_ended(&run, Duration::from_secs(30)).await?;
    ensure!(view["status"] == "failed", "{view}");
    let events = client.events_to_finished(&run, Resume::Start).await?;
    let shown = format!(
        "{view} {:?}",
        events.iter().map(|e| &e.data).collect::<Vec<_>>()
    );
    ensure!(shown.contains("request failed"), "{shown}");
    for secret in [address.as_str(), "127.0.0.1", "http://"] {
        ensure!(
            !shown.contains(secret),
            "{secret} is shown to the user: {shown}"
        );
    }
    // The operator's log has the whole error.
    ensure!(server.log().contains(&address), "the log names the address");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_from_trusted_proxies() -> Result<()> {
    for trusted in [true, false] {
        let mut config = ServerConfig::new()
            .scripted("s", "Hi.", 200.0)
            .raw_toml("[limits]\nlogin_failures = 2\nlogin_failures_per_account = 100\n");
        if trusted {
            // The test client is the proxy here.
            config = config.server_setting("trusted_proxies", vec!["127.0.0.1"]);
        }
        let server = TestServer::start(config).await?;
        let name = unique_name("proxied");
        server.create_user(&name, PASSWORD).await?;
        let login = |forwarded_for: &'static str| {
            let client = server.client();
            let name = name.clone();
            async move {
                let r = client
                    .request(Method::POST, "/api/auth/login")
                    .header("x-forwarded-for", forwarded_for)
                    .json(&json!({"name": name, "password": "wrong password!"}))
                    .send()
                    .await?;
                anyhow::Ok(r)
            }
        };
        for _ in 0..2 {
            expect_error(login("203.0.113.1").await?, 401, "invalid_credentials").await?;
        }
        expect_error(login("203.0.113.1").await?, 429, "rate_limited").await?;
        if trusted {
            // Behind the proxy, another client has its own limit.
            expect_error(login("203.0.113.2").await?, 401, "invalid_credentials").await?;
        } else {
            // From anyone else the header is ignored: a made-up address is no way out.
            expect_error(login("203.0.113.2").await?, 429, "rate_limited").await?;
        }
    }
    Ok(())
}
