//! Balances and usage over HTTP and the CLI: a run the balance cannot cover is
//! refused with 402 and writes nothing; a grant (CLI or admin API) lets it run; the
//! run is charged exactly its usage at the model's price; `/api/me/usage` adds up;
//! the ledger sums to the balance on PostgreSQL.

use crate::quota_support::*;
use anyhow::{Result, ensure};
use chorus_tests::{
    PASSWORD, ServerConfig, TestDatabase, TestServer, logged_in_client, unique_name,
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_balances_are_refused_and_usage_adds_up() -> Result<()> {
    let db = TestDatabase::create().await?;
    let server = TestServer::start(priced(ServerConfig::new().postgres(db.url()), "")).await?;
    let name = unique_name("payer");
    let client = logged_in_client(&server, &name).await?;
    let conversation = client.create_conversation(None).await?;

    // New accounts start with the default balance: zero here. Refused, nothing written.
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/conversations/{conversation}/messages"),
        Some(json!({"content": "hello"})),
    )
    .await?;
    let error = expect_error(resp, 402, "insufficient_balance").await?;
    ensure!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("balance"),
        "{error}"
    );
    ensure!(
        client.messages(&conversation).await?.is_empty(),
        "a refused message is not stored"
    );
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/conversations/{conversation}/messages"),
        Some(json!({"content": "hello"})),
    )
    .await?;
    expect_error(resp, 402, "insufficient_balance").await?;

    // The CLI grants credits.
    let out = server
        .cli(&["user", "grant", &name, "0.5", "--note", "trial"], None)
        .await?;
    ensure!(out.stdout.contains("balance 0.5 credits"), "{}", out.stdout);
    let before = usage(&client).await?;
    ensure!(
        before["balance"] == 0.5 && before["balance_micros"] == 500_000,
        "{before}"
    );

    let run = client.send_message(&conversation, "hello").await?.run_id;
    let view = client.wait_run_ended(&run, Duration::from_secs(20)).await?;
    ensure!(view["status"] == "complete", "{view}");
    let (prompt, completion) = (
        view["prompt_tokens"].as_i64().unwrap_or(-1),
        view["completion_tokens"].as_i64().unwrap_or(-1),
    );
    ensure!(prompt > 0 && completion == 8, "usage of the run: {view}");
    let cost = cost_micros(prompt, completion);

    let after = usage(&client).await?;
    ensure!(
        after["balance_micros"] == 500_000 - cost,
        "balance after one run of cost {cost}: {after}"
    );
    ensure!(
        after["quota_enabled"] == true && after["days"] == 30,
        "{after}"
    );
    let today = utc_day(view["created_at"].as_i64().unwrap_or_default());
    let day = &after["by_day"][0];
    ensure!(day["key"] == today.as_str() && day["runs"] == 1, "{after}");
    let model = &after["by_model"][0];
    ensure!(
        model["key"] == "s/demo"
            && model["runs"] == 1
            && model["prompt_tokens"] == prompt
            && model["completion_tokens"] == completion
            && (model["cost"].as_f64().unwrap_or_default() - cost as f64 / 1e6).abs() < 1e-9,
        "{after}"
    );
    // Nothing yesterday and before in a one-day window other than today.
    let one_day = expect_status(client.get("/api/me/usage?days=1").await?, 200).await?;
    ensure!(
        one_day["by_day"].as_array().map(Vec::len) == Some(1),
        "{one_day}"
    );
    for bad in ["days=0", "days=367", "days=abc", "days=-1"] {
        expect_error(
            client.get(&format!("/api/me/usage?{bad}")).await?,
            400,
            "invalid_request",
        )
        .await?;
    }

    // Admin grants through the API; a user may not.
    let resp = call(
        &client,
        Method::POST,
        "/api/admin/grants",
        Some(json!({"account": name, "amount": 100})),
    )
    .await?;
    expect_error(resp, 403, "forbidden").await?;
    let admin_name = unique_name("admin");
    server
        .cli(
            &["user", "create", &admin_name, "--admin", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await?;
    let admin = server.client();
    admin.login(&admin_name, PASSWORD).await?;
    let resp = call(
        &admin,
        Method::POST,
        "/api/admin/grants",
        Some(json!({"account": name, "amount": -1, "note": "clawback"})),
    )
    .await?;
    let granted = expect_status(resp, 201).await?;
    ensure!(
        granted["balance_micros"] == 500_000 - cost - 1_000_000,
        "{granted}"
    );
    for (body, status, code) in [
        (
            json!({"account": name, "amount": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"account": name, "amount": 1e300}),
            400,
            "invalid_request",
        ),
        (
            json!({"account": "nobody-here", "amount": 1}),
            404,
            "not_found",
        ),
        (
            json!({"account": name, "amount": "lots"}),
            400,
            "malformed_json",
        ),
    ] {
        let resp = call(&admin, Method::POST, "/api/admin/grants", Some(body)).await?;
        expect_error(resp, status, code).await?;
    }
    // Below zero: refused again, also for continuing a reply.
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/conversations/{conversation}/messages"),
        Some(json!({"content": "more"})),
    )
    .await?;
    expect_error(resp, 402, "insufficient_balance").await?;

    let pool = db.pool().await?;
    ensure!(assert_ledger_balanced(&pool).await? >= 2);
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, amount FROM ledger ORDER BY created_at, id")
            .fetch_all(&pool)
            .await?;
    let reasons: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
    ensure!(
        reasons == ["grant", "run_usage", "grant"],
        "ledger reasons: {rows:?}"
    );
    ensure!(rows[1].1 == -cost, "{rows:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_refill_rate_and_concurrency_limits() -> Result<()> {
    // 8 tokens at 4 a second: the first run still streams when the second message
    // comes, on a machine however loaded.
    let server = TestServer::start(priced_at(
        ServerConfig::new(),
        "refill_amount = 0.1\nrefill_interval_secs = 3600\n[limits]\nmessages_per_window = 3\nwindow_secs = 3600\nmax_concurrent_runs = 1\n",
        4.0,
    ))
    .await?;
    let client = logged_in_client(&server, &unique_name("limited")).await?;
    let a = client.create_conversation(None).await?;
    let b = client.create_conversation(None).await?;
    // Empty balance: the first message refills it (once per interval) and runs.
    let run = client.send_message(&a, "first").await?.run_id;
    // A second run while the first streams: refused by the concurrency limit.
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/conversations/{b}/messages"),
        Some(json!({"content": "second"})),
    )
    .await?;
    expect_error(resp, 429, "too_many_runs").await?;
    client.wait_run_ended(&run, Duration::from_secs(20)).await?;
    let report = usage(&client).await?;
    let balance = report["balance_micros"].as_i64().unwrap_or_default();
    ensure!(
        balance > 0 && balance < 100_000,
        "refilled 0.1 credits, minus one run: {report}"
    );
    let run = client.send_message(&b, "third").await?.run_id;
    client.wait_run_ended(&run, Duration::from_secs(20)).await?;
    // The fourth message in the window: rate limited.
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/conversations/{b}/messages"),
        Some(json!({"content": "fourth"})),
    )
    .await?;
    expect_error(resp, 429, "rate_limited").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_have_scopes_last_use_and_revocation() -> Result<()> {
    let server = TestServer::start(ServerConfig::new().scripted("s", TEXT, 200.0)).await?;
    let client = logged_in_client(&server, &unique_name("keys")).await?;
    let create = |body: serde_json::Value| call(&client, Method::POST, "/api/keys", Some(body));
    let read = expect_status(
        create(json!({"name": "reader", "scopes": ["read"]})).await?,
        201,
    )
    .await?;
    let chat = expect_status(create(json!({"name": "bot"})).await?, 201).await?;
    let read_key = read["key"].as_str().unwrap_or_default().to_string();
    let chat_key = chat["key"].as_str().unwrap_or_default().to_string();
    ensure!(
        read_key.starts_with("chorus_") && chat_key.starts_with("chorus_"),
        "{read} {chat}"
    );
    ensure!(
        chat["api_key"]["scopes"] == json!(["read", "chat"]),
        "{chat}"
    );

    let reader = chorus_tests::ApiClient::with_api_key(&server.url(), &read_key);
    let chatter = chorus_tests::ApiClient::with_api_key(&server.url(), &chat_key);
    expect_status(reader.get("/api/conversations").await?, 200).await?;
    let resp = call(&reader, Method::POST, "/api/conversations", Some(json!({}))).await?;
    expect_error(resp, 403, "insufficient_scope").await?;
    expect_status(
        call(
            &chatter,
            Method::POST,
            "/api/conversations",
            Some(json!({})),
        )
        .await?,
        201,
    )
    .await?;
    // Keys cannot manage keys or link accounts.
    expect_error(chatter.get("/api/keys").await?, 403, "session_required").await?;
    expect_error(
        call(&chatter, Method::POST, "/api/link-codes", None).await?,
        403,
        "session_required",
    )
    .await?;

    // The listing shows names, scopes and last use, never a secret.
    let listing = client.get("/api/keys").await?.text().await?;
    ensure!(
        !listing.contains(&read_key) && !listing.contains(&chat_key),
        "a secret leaked: {listing}"
    );
    let listed: serde_json::Value = serde_json::from_str(&listing)?;
    let keys = listed["api_keys"].as_array().cloned().unwrap_or_default();
    ensure!(
        keys.len() == 2 && keys.iter().all(|k| k["last_used_at"].is_i64()),
        "{listed}"
    );

    // Bad input: oversized or empty names, unknown or no scopes.
    for body in [
        json!({"name": "x".repeat(65)}),
        json!({"name": "  "}),
        json!({"name": "k", "scopes": ["admin"]}),
        json!({"name": "k", "scopes": []}),
    ] {
        expect_error(create(body).await?, 400, "invalid_request").await?;
    }
    expect_error(
        create(json!({"name": "k", "extra": 1})).await?,
        400,
        "malformed_json",
    )
    .await?;

    // Revocation: at once, once.
    let id = read["api_key"]["id"].as_str().unwrap_or_default();
    expect_status(
        call(&client, Method::DELETE, &format!("/api/keys/{id}"), None).await?,
        204,
    )
    .await?;
    expect_error(
        reader.get("/api/conversations").await?,
        401,
        "invalid_api_key",
    )
    .await?;
    expect_error(
        call(&client, Method::DELETE, &format!("/api/keys/{id}"), None).await?,
        404,
        "not_found",
    )
    .await?;
    expect_status(chatter.get("/api/conversations").await?, 200).await?;
    Ok(())
}

/// A run whose instance dies is charged once, by the sweeper of the restarted
/// instance: its estimated prompt and the text it kept. Continuing it is admitted
/// like any run.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_stream_is_charged_once_by_the_sweeper() -> Result<()> {
    let db = TestDatabase::create().await?;
    let long = chorus_tests::script(200);
    let config = priced(
        ServerConfig::new().postgres(db.url()),
        "[accounts]\ndefault_balance = 1.0\n",
    )
    .lease_ttl_secs(3)
    .checkpoint_interval_ms(200)
    .provider_setting("s", "text", long.as_str())
    .provider_setting("s", "tokens_per_second", 20.0);
    let mut server = TestServer::start(config).await?;
    let name = unique_name("killed");
    let client = logged_in_client(&server, &name).await?;
    let conversation = client.create_conversation(None).await?;
    let run = client
        .send_message(&conversation, "tell me everything")
        .await?
        .run_id;
    checkpointed(&client, &conversation).await?;
    server.kill_9()?;
    server.restart().await?;
    let view = interrupted(&client, &run).await?;
    let kept = view["text"].as_str().unwrap_or_default().to_string();
    ensure!(!kept.is_empty() && kept.len() < long.len(), "{view}");

    let pool = db.pool().await?;
    let charges: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT amount, prompt_tokens, completion_tokens FROM ledger WHERE run_id = $1",
    )
    .bind(&run)
    .fetch_all(&pool)
    .await?;
    ensure!(charges.len() == 1, "charged once: {charges:?}");
    let (amount, prompt, completion) = charges[0];
    ensure!(
        prompt > 0 && completion > 0 && amount == -cost_micros(prompt, completion),
        "{charges:?}"
    );
    assert_ledger_balanced(&pool).await?;

    // Restarting again sweeps nothing twice. Another run killed mid-stream shows the
    // sweep after this restart has run: it is marked interrupted (and charged) in the
    // pass that would charge the first run again.
    let other = client.create_conversation(None).await?;
    let second = client.send_message(&other, "and again").await?.run_id;
    checkpointed(&client, &other).await?;
    server.kill_9()?;
    server.restart().await?;
    interrupted(&client, &second).await?;
    let (first, second) = (
        charge_count(&pool, &run).await?,
        charge_count(&pool, &second).await?,
    );
    ensure!(
        first == 1 && second == 1,
        "charged {first} times, and the second run {second} times"
    );
    assert_ledger_balanced(&pool).await?;

    // With the balance gone, continuing the interrupted reply is refused too.
    server.cli(&["user", "grant", &name, "-5"], None).await?;
    let resp = call(
        &client,
        Method::POST,
        &format!("/api/runs/{run}/continue"),
        None,
    )
    .await?;
    expect_error(resp, 402, "insufficient_balance").await?;
    Ok(())
}

/// How many ledger rows charge `run`.
async fn charge_count(pool: &sqlx::PgPool, run: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE run_id = $1")
            .bind(run)
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until the assistant message of `conversation` has text: a checkpoint saved it.
async fn checkpointed(client: &chorus_tests::ApiClient, conversation: &str) -> Result<()> {
    chorus_tests::wait::until(
        "a checkpoint with text",
        Duration::from_secs(20),
        || async {
            let messages = client.messages(conversation).await?;
            Ok(messages
                .iter()
                .any(|m| {
                    m["role"] == "assistant"
                        && !m["content"].as_str().unwrap_or_default().is_empty()
                })
                .then_some(()))
        },
    )
    .await
}

/// Waits until the sweeper has marked `run` interrupted; returns the run.
async fn interrupted(client: &chorus_tests::ApiClient, run: &str) -> Result<serde_json::Value> {
    chorus_tests::wait::until(
        "the run to be interrupted",
        Duration::from_secs(30),
        || async {
            let view = client.run(run).await?;
            Ok((view["status"] == "interrupted").then_some(view))
        },
    )
    .await
}

/// Two instances on one PostgreSQL and one Redis: the message rate limit counts in
/// Redis, the concurrency limit in the database, so neither can be doubled by
/// spreading requests over instances.
#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_across_instances() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = chorus_tests::TestRedis::new().await?;
    let shared = priced(
        ServerConfig::new()
            .postgres(db.url())
            .redis_journal(redis.url(), redis.prefix()),
        "[accounts]\ndefault_balance = 10.0\n[limits]\nmessages_per_window = 3\nwindow_secs = 3600\nmax_concurrent_runs = 1\n",
    )
    .provider_setting("s", "tokens_per_second", 8.0);
    let a = TestServer::start(shared.clone().instance_id("limit-a")).await?;
    let b = TestServer::start(shared.instance_id("limit-b")).await?;
    let name = unique_name("spread");
    let on_a = logged_in_client(&a, &name).await?;
    let on_b = on_a.same_session_on(&b.url());
    let conversation = on_a.create_conversation(None).await?;
    let send = |client: &chorus_tests::ApiClient, text: &str| {
        let (client, path, body) = (
            client.clone(),
            format!("/api/conversations/{conversation}/messages"),
            json!({"content": text}),
        );
        async move { call(&client, Method::POST, &path, Some(body)).await }
    };

    // One run streams on A (about a second): B may not start a second one.
    let first = expect_status(send(&on_a, "one").await?, 202).await?;
    expect_error(send(&on_b, "two").await?, 429, "too_many_runs").await?;
    on_a.wait_run_ended(
        first["run_id"].as_str().unwrap_or_default(),
        Duration::from_secs(20),
    )
    .await?;
    // Three messages per window in all: the refused one above counted too.
    let third = expect_status(send(&on_b, "three").await?, 202).await?;
    on_b.wait_run_ended(
        third["run_id"].as_str().unwrap_or_default(),
        Duration::from_secs(20),
    )
    .await?;
    expect_error(send(&on_a, "four").await?, 429, "rate_limited").await?;
    expect_error(send(&on_b, "five").await?, 429, "rate_limited").await?;
    Ok(())
}
