//! Bad input of every kind gets the right status and the `{error: {code, message}}`
//! shape, touches nothing (no half-written message), and never reveals or affects
//! another account's data. Bad configuration is explained; secrets are never printed.

use crate::{only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::server::run_chorus;
use chorus_tests::{
    ApiClient, PASSWORD, ServerConfig, TestServer, logged_in_client, script, unique_name,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::time::Duration;

/// Checks the status and the error shape; returns the error object.
async fn expect_error(resp: Response, status: u16, code: Option<&str>) -> Result<Value> {
    let got = resp.status();
    let body = resp.text().await?;
    ensure!(
        got.as_u16() == status,
        "expected HTTP {status}, got {got}: {body}"
    );
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("HTTP {got}: body is not JSON: {body}"))?;
    let error = &v["error"];
    ensure!(
        error["code"].is_string() && error["message"].is_string(),
        "HTTP {got}: body is not {{error: {{code, message}}}}: {body}"
    );
    if let Some(code) = code {
        ensure!(error["code"] == code, "expected code {code}: {body}");
    }
    Ok(error.clone())
}

async fn started(tps: f64) -> Result<(TestServer, String)> {
    let text = script(40);
    let server = TestServer::start(ServerConfig::new().scripted("s", &text, tps)).await?;
    Ok((server, text))
}

/// A conversation with one finished turn.
async fn conversation_with_a_turn(client: &ApiClient) -> Result<(String, String)> {
    let conversation = client.create_conversation(None).await?;
    let run = client.send_message(&conversation, "first").await?.run_id;
    let view = client.wait_run_ended(&run, Duration::from_secs(20)).await?;
    ensure!(s(&view, "status") == "complete", "{view}");
    Ok((conversation, run))
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_ids_are_404() -> Result<()> {
    let (server, _) = started(200.0).await?;
    let client = logged_in_client(&server, &unique_name("ids")).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [
        unknown.as_str(),
        "not-a-run",
        "1%20OR%201=1",
        "..%2F..%2Fetc",
    ] {
        for (method, path) in [
            (Method::GET, format!("/api/runs/{id}")),
            (Method::GET, format!("/api/runs/{id}/events")),
            (Method::POST, format!("/api/runs/{id}/stop")),
            (Method::POST, format!("/api/runs/{id}/continue")),
            (Method::GET, format!("/api/conversations/{id}")),
        ] {
            let resp = client.request(method.clone(), &path).send().await?;
            expect_error(resp, 404, Some("not_found"))
                .await
                .with_context(|| format!("{method} {path}"))?;
        }
        let resp = client
            .request(Method::POST, &format!("/api/conversations/{id}/messages"))
            .json(&json!({"content": "hello?"}))
            .send()
            .await?;
        expect_error(resp, 404, Some("not_found"))
            .await
            .with_context(|| format!("POST messages to {id}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_resources_are_404_and_untouched() -> Result<()> {
    // Slow enough that the other account's stop arrives while the run streams.
    let (server, text) = started(40.0).await?;
    let owner = logged_in_client(&server, &unique_name("owner")).await?;
    let intruder = logged_in_client(&server, &unique_name("intruder")).await?;
    let conversation = owner.create_conversation(None).await?;
    let run = owner.send_message(&conversation, "mine").await?.run_id;
    let before = owner.messages(&conversation).await?;

    let attempts = [
        (Method::GET, format!("/api/runs/{run}")),
        (Method::GET, format!("/api/runs/{run}/events")),
        (Method::POST, format!("/api/runs/{run}/stop")),
        (Method::POST, format!("/api/runs/{run}/continue")),
        (Method::GET, format!("/api/conversations/{conversation}")),
    ];
    for (method, path) in &attempts {
        let resp = intruder.request(method.clone(), path).send().await?;
        expect_error(resp, 404, Some("not_found"))
            .await
            .with_context(|| format!("intruder's {method} {path} while the run streams"))?;
    }
    let resp = intruder
        .request(
            Method::POST,
            &format!("/api/conversations/{conversation}/messages"),
        )
        .json(&json!({"content": "let me in"}))
        .send()
        .await?;
    expect_error(resp, 404, Some("not_found")).await?;
    let list = intruder
        .request(Method::GET, "/api/conversations")
        .send()
        .await?;
    let list: Value = list.json().await?;
    ensure!(
        list["conversations"].as_array().is_some_and(Vec::is_empty),
        "the intruder lists {list}"
    );

    // The owner's run went on untouched by the intruder's stop.
    let view = owner.wait_run_ended(&run, Duration::from_secs(20)).await?;
    ensure!(
        s(&view, "status") == "complete" && s(&view, "text") == text,
        "the owner's run ended as {view}"
    );
    let after = owner.messages(&conversation).await?;
    ensure!(after.len() == before.len(), "messages changed: {after:?}");
    ensure!(s(only_assistant(&after)?, "content") == text);

    // Still 404 once the run has ended (continue would otherwise be allowed).
    for (method, path) in &attempts {
        let resp = intruder.request(method.clone(), path).send().await?;
        expect_error(resp, 404, Some("not_found"))
            .await
            .with_context(|| format!("intruder's {method} {path} after the run"))?;
    }
    ensure!(owner.messages(&conversation).await? == after);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_are_401() -> Result<()> {
    let (server, _) = started(200.0).await?;
    let client = logged_in_client(&server, &unique_name("auth")).await?;
    let (conversation, run) = conversation_with_a_turn(&client).await?;
    let anonymous = server.client();
    for (method, path) in [
        (Method::GET, "/api/me".to_string()),
        (Method::GET, "/api/conversations".to_string()),
        (Method::GET, format!("/api/conversations/{conversation}")),
        (Method::GET, format!("/api/runs/{run}")),
        (Method::GET, format!("/api/runs/{run}/events")),
        (Method::POST, format!("/api/runs/{run}/continue")),
    ] {
        let resp = anonymous.request(method.clone(), &path).send().await?;
        expect_error(resp, 401, Some("unauthenticated"))
            .await
            .with_context(|| format!("anonymous {method} {path}"))?;
    }
    let resp = anonymous
        .request(
            Method::POST,
            &format!("/api/conversations/{conversation}/messages"),
        )
        .json(&json!({"content": "hi"}))
        .send()
        .await?;
    expect_error(resp, 401, Some("unauthenticated")).await?;
    // A forged or expired session cookie.
    let resp = anonymous
        .request(Method::GET, "/api/me")
        .header("cookie", "chorus_session=forged")
        .send()
        .await?;
    expect_error(resp, 401, None).await?;
    // Wrong password, unknown account.
    for (name, password) in [("nobody", PASSWORD), ("nobody", "")] {
        let resp = anonymous
            .request(Method::POST, "/api/auth/login")
            .json(&json!({"name": name, "password": password}))
            .send()
            .await?;
        expect_error(resp, 401, Some("invalid_credentials")).await?;
    }
    ensure!(client.messages(&conversation).await?.len() == 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_rejected_and_write_nothing() -> Result<()> {
    let (server, _) = started(200.0).await?;
    let client = logged_in_client(&server, &unique_name("body")).await?;
    let (conversation, _) = conversation_with_a_turn(&client).await?;
    let before = client.messages(&conversation).await?;
    let path = format!("/api/conversations/{conversation}/messages");
    let json_body = |body: String| {
        client
            .request(Method::POST, &path)
            .header("content-type", "application/json")
            .body(body)
    };

    let two_mib = "x".repeat(2 * 1024 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            json_body(r#"{"content": "hi"#.into()),
            400,
            Some("malformed_json"),
        ),
        (
            "wrong field type",
            json_body(r#"{"content": 42}"#.into()),
            400,
            None,
        ),
        (
            "missing field",
            json_body(r#"{"parent_id": null}"#.into()),
            400,
            None,
        ),
        (
            "unknown field",
            json_body(r#"{"content": "hi", "nope": 1}"#.into()),
            400,
            None,
        ),
        (
            "body over the limit",
            json_body(json!({"content": two_mib}).to_string()),
            413,
            Some("body_too_large"),
        ),
        (
            "empty content",
            json_body(r#"{"content": ""}"#.into()),
            400,
            Some("invalid_request"),
        ),
        (
            "blank content",
            json_body(r#"{"content": " \n\t "}"#.into()),
            400,
            Some("invalid_request"),
        ),
        (
            "a NUL character",
            json_body(r#"{"content": "before\u0000after"}"#.into()),
            400,
            Some("invalid_request"),
        ),
        (
            "unknown model",
            json_body(r#"{"content": "hi", "model": "nope/imaginary-model"}"#.into()),
            400,
            Some("invalid_request"),
        ),
        (
            "not JSON at all",
            client
                .request(Method::POST, &path)
                .header("content-type", "text/plain")
                .body("hi"),
            415,
            None,
        ),
    ];
    for (what, req, status, code) in cases {
        let resp = req
            .send()
            .await
            .with_context(|| format!("sending {what}"))?;
        let error = expect_error(resp, status, code).await.context(what)?;
        if what == "a NUL character" {
            ensure!(
                s(&error, "message").contains("NUL character"),
                "the error does not name the character: {error}"
            );
        }
        if what == "unknown model" {
            ensure!(
                s(&error, "message").contains("nope/imaginary-model"),
                "the error does not name the model: {error}"
            );
        }
        let after = client.messages(&conversation).await?;
        ensure!(
            after == before,
            "{what} changed the conversation: {after:?}"
        );
    }

    // The same rules when creating a conversation.
    let resp = client
        .request(Method::POST, "/api/conversations")
        .json(&json!({"model": "nope/imaginary-model"}))
        .send()
        .await?;
    let error = expect_error(resp, 400, Some("invalid_request")).await?;
    ensure!(
        s(&error, "message").contains("nope/imaginary-model"),
        "{error}"
    );
    let resp = client
        .request(Method::POST, "/api/conversations")
        .header("content-type", "application/json")
        .body("[1, 2")
        .send()
        .await?;
    expect_error(resp, 400, Some("malformed_json")).await?;
    let list: Value = client
        .request(Method::GET, "/api/conversations")
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        list["conversations"].as_array().map(Vec::len) == Some(1),
        "rejected creates left conversations behind: {list}"
    );
    // Unknown routes answer in the same shape.
    let resp = client
        .request(Method::GET, "/api/nothing-here")
        .send()
        .await?;
    expect_error(resp, 404, Some("not_found")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_authenticate() -> Result<()> {
    let (server, _) = started(200.0).await?;
    let name = unique_name("key");
    server.create_user(&name, PASSWORD).await?;
    let key = server.create_api_key(&name).await?;
    ensure!(key.starts_with("chorus_"), "key {key:?}");
    let with_key = ApiClient::with_api_key(&server.url(), &key);
    let me = with_key.me().await?;
    ensure!(s(&me, "name") == name, "{me}");
    // A key drives the whole API, not only /api/me.
    let conversation = with_key.create_conversation(None).await?;
    let run = with_key.send_message(&conversation, "by key").await?.run_id;
    let view = with_key
        .wait_run_ended(&run, Duration::from_secs(20))
        .await?;
    ensure!(s(&view, "status") == "complete", "{view}");

    for wrong in [format!("{key}x"), "chorus_wrong".to_string(), String::new()] {
        let resp = server
            .client()
            .request(Method::GET, "/api/me")
            .header("authorization", format!("Bearer {wrong}"))
            .send()
            .await?;
        expect_error(resp, 401, None)
            .await
            .with_context(|| format!("bearer {wrong:?}"))?;
    }
    let resp = server
        .client()
        .request(Method::GET, "/api/me")
        .header("authorization", format!("Basic {key}"))
        .send()
        .await?;
    expect_error(resp, 401, None).await?;
    // A wrong key is not rescued by a valid session cookie: the key was asked for.
    let session = logged_in_client(&server, &unique_name("both")).await?;
    let resp = session
        .request(Method::GET, "/api/me")
        .header("authorization", "Bearer chorus_wrong")
        .send()
        .await?;
    expect_error(resp, 401, Some("invalid_api_key")).await?;
    Ok(())
}

/// `chorus --config FILE config check` on FILE containing `toml`.
async fn config_check(toml: &str) -> Result<chorus_tests::server::CliOutput> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chorus.toml");
    std::fs::write(&path, toml)?;
    let path = path.to_string_lossy().into_owned();
    run_chorus(&["--config", &path, "config", "check"], None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_is_explained() -> Result<()> {
    // (config, what stderr must mention: the key, the value, what was expected)
    let cases: &[(&str, &[&str])] = &[
        (
            "[server]\nlisten = \"nowhere\"\n",
            &["server.listen", "nowhere", "HOST:PORT"],
        ),
        (
            "[engine]\nlease_ttl_secs = \"soon\"\n",
            &["engine.lease_ttl_secs", "soon", "expected"],
        ),
        (
            "[engine]\nlease_ttl_secs = 1\n",
            &["engine.lease_ttl_secs", "1", "at least 2"],
        ),
        (
            "[server]\nlisten_on = \"x\"\n",
            &["listen_on", "expected", "listen"],
        ),
        ("[nonsense]\nx = 1\n", &["nonsense", "expected"]),
        (
            "[database]\nurl = \"mysql://root:dbpw@db/chorus\"\n",
            &["database.url", "mysql://root:", "postgres://"],
        ),
        (
            "[[providers]]\nid = \"oai\"\nkind = \"openai\"\nmodels = []\n",
            &["providers[0].models", "at least one model"],
        ),
        ("[server\nlisten = 1\n", &["TOML"]),
    ];
    for (toml, needles) in cases {
        let out = config_check(toml).await?;
        ensure!(
            !out.success,
            "`config check` accepted {toml:?}:\n{}",
            out.stdout
        );
        for needle in *needles {
            ensure!(
                out.stderr.contains(needle),
                "for {toml:?} stderr does not mention {needle:?}:\n{}",
                out.stderr
            );
        }
        ensure!(!out.stdout.contains("config is valid"), "{}", out.stdout);
    }
    // Secrets stay hidden even in the error about them.
    let out = config_check("[database]\nurl = \"mysql://root:dbpw@db/chorus\"\n").await?;
    ensure!(
        !out.stderr.contains("dbpw"),
        "the password leaked: {}",
        out.stderr
    );
    Ok(())
}

/// `config check` accepts risky settings but warns about each on stderr, one line
/// naming its key; the defaults (the embedded demo's config) get no warning.
#[tokio::test(flavor = "multi_thread")]
async fn config_check_warns_about_each_risky_setting() -> Result<()> {
    let out = config_check("").await?;
    ensure!(out.success, "{}", out.stderr);
    ensure!(!out.stderr.contains("warning"), "{}", out.stderr);
    let risky = "[quota]\nenabled = false\n\
                 [limits]\nmessages_per_window = 0\nmax_concurrent_runs = 0\non_store_error = \"allow\"\n\
                 [accounts]\ndefault_role = \"admin\"\n\
                 [auth]\npublic_url = \"https://chat.example.com\"\ncookie_secure = false\n\
                 [sandbox]\nenabled = true\n\
                 [matrix]\nhomeserver_url = \"https://matrix.example.org\"\n\
                 user_id = \"@chorus:example.org\"\npassword = \"pw\"\nallow_all = true\n\
                 allowed_servers = [\"*\"]\n\
                 [discord]\ntoken = \"abc.def.ghi\"\n\
                 [slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n";
    let out = config_check(risky).await?;
    ensure!(out.success, "risky settings are valid: {}", out.stderr);
    ensure!(out.stdout.contains("config is valid"), "{}", out.stdout);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    let keys = [
        "quota.enabled",
        "limits.messages_per_window",
        "limits.max_concurrent_runs",
        "limits.on_store_error",
        "accounts.default_role",
        "auth.cookie_secure",
        "sandbox.enabled",
        "matrix.allow_all",
        "matrix.allowed_servers",
        "discord.allowed_guilds",
        "slack.allowed_workspaces",
    ];
    ensure!(
        warnings.len() == keys.len(),
        "one warning per risky setting:\n{}",
        out.stderr
    );
    for key in keys {
        ensure!(
            warnings
                .iter()
                .filter(|w| w.starts_with(&format!("warning: {key} ")))
                .count()
                == 1,
            "no single warning names {key}:\n{}",
            out.stderr
        );
    }
    // A Matrix bot that says nobody may use it is refused, naming the choice.
    let out = config_check(
        "[matrix]\nhomeserver_url = \"https://matrix.example.org\"\n\
         user_id = \"@chorus:example.org\"\npassword = \"pw\"\n",
    )
    .await?;
    ensure!(!out.success, "{}", out.stdout);
    ensure!(
        out.stderr.contains("matrix.allowed_users") && out.stderr.contains("matrix.allow_all"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// A provider that cannot work is named by `config check` before any request: an
/// unknown kind, a kind that needs a key without one, a base URL that is no URL.
#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_the_broken_provider_setting() -> Result<()> {
    let provider = |body: &str| format!("[[providers]]\n{body}models = [\"m\"]\n");
    let cases: Vec<(String, &[&str])> = vec![
        (
            provider("id = \"x\"\nkind = \"openia\"\napi_key = \"k\"\n"),
            &["providers[0].kind", "openia", "`openai`", "`anthropic`"],
        ),
        (
            provider("id = \"claude\"\nkind = \"anthropic\"\n"),
            &[
                "providers[0].api_key",
                "provider `claude`",
                "kind = \"anthropic\"",
            ],
        ),
        (
            provider("id = \"gem\"\nkind = \"gemini\"\napi_key = \"\"\n"),
            &[
                "providers[0].api_key",
                "provider `gem`",
                "kind = \"gemini\"",
            ],
        ),
        (
            provider("id = \"oai\"\nkind = \"openai\"\n"),
            &[
                "providers[0].api_key",
                "provider `oai`",
                "kind = \"openai\"",
            ],
        ),
        (
            provider(
                "id = \"aws\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\napi_key = \"AKID\"\n",
            ),
            &["providers[0].secret_key", "provider `aws`"],
        ),
        (
            provider("id = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://gpu box:8000/v1\"\n"),
            &[
                "providers[0].base_url",
                "http://gpu box:8000/v1",
                "http:// or https:// URL",
            ],
        ),
        (
            provider(
                "id = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:80000/v1\"\n",
            ),
            &["providers[0].base_url", "80000", "invalid port"],
        ),
        (
            provider("id = \"o\"\nkind = \"ollama\"\nbase_url = \"localhost:11434\"\n"),
            &[
                "providers[0].base_url",
                "localhost:11434",
                "http:// or https://",
            ],
        ),
    ];
    for (toml, needles) in &cases {
        let out = config_check(toml).await?;
        ensure!(
            !out.success,
            "`config check` accepted {toml:?}:\n{}",
            out.stdout
        );
        for needle in *needles {
            ensure!(
                out.stderr.contains(needle),
                "for {toml:?} stderr does not mention {needle:?}:\n{}",
                out.stderr
            );
        }
    }
    // A self-hosted OpenAI-compatible server needs no key.
    let out = config_check(&provider(
        "id = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
    ))
    .await?;
    ensure!(
        out.success,
        "`config check` refused a keyless vLLM: {}",
        out.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_masks_secrets() -> Result<()> {
    let toml = r#"
[server]
listen = "127.0.0.1:4999"

[database]
url = "postgres://chorus:pg-e2e-hunter2@db.internal:5432/chorus"

[journal]
redis_url = "redis://:redis-e2e-pw@cache.internal:6379"

[[providers]]
id = "openai"
kind = "openai"
api_key = "sk-e2e-very-secret-key"
models = ["gpt-4o-mini"]
headers = { "X-Org" = "org-e2e-secret" }
"#;
    let out = config_check(toml).await?;
    ensure!(out.success, "`config check` failed: {}", out.stderr);
    for secret in [
        "pg-e2e-hunter2",
        "redis-e2e-pw",
        "sk-e2e-very-secret-key",
        "org-e2e-secret",
    ] {
        ensure!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    for shown in [
        "postgres://chorus:********@db.internal:5432/chorus",
        "cache.internal:6379",
        "127.0.0.1:4999",
        "gpt-4o-mini",
        "config is valid",
    ] {
        ensure!(
            out.stdout.contains(shown),
            "{shown:?} missing from:\n{}",
            out.stdout
        );
    }
    Ok(())
}
