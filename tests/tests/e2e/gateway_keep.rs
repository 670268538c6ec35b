//! How gateway requests are kept (`[gateway] keep`): by default as runs, readable by
//! their owner but out of the web client's conversation list, deleted after
//! `retention_days` with their charge left in the ledger; with `keep =
//! "conversations"`, as conversations in the web client. What cannot be stored as
//! sent (a NUL character) is stored replaced.

use crate::quota_support::{TEXT, assert_ledger_balanced, priced};
use anyhow::{Result, ensure};
use chorus_tests::{ApiClient, ServerConfig, TestDatabase, TestServer, unique_name, wait};
use serde_json::{Value, json};
use std::time::Duration;

/// One non-streaming completion; returns its run id.
async fn one_request(server: &TestServer, key: &str) -> Result<String> {
    request_of(
        server,
        key,
        json!([{"role": "user", "content": "hello there"}]),
    )
    .await
}

/// One non-streaming completion of `messages`; returns its run id.
async fn request_of(server: &TestServer, key: &str, messages: Value) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(key)
        .json(&json!({"model": "s/demo", "messages": messages}))
        .send()
        .await?;
    ensure!(resp.status() == 200, "{}", resp.status());
    let run = resp
        .headers()
        .get("x-chorus-run-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = resp.json().await?;
    ensure!(body["choices"][0]["message"]["content"] == TEXT, "{body}");
    Ok(run)
}

async fn keyed_account(server: &TestServer) -> Result<String> {
    let name = unique_name("keeper");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    server.cli(&["user", "grant", &name, "10"], None).await?;
    server.create_api_key(&name).await
}

async fn conversations(client: &ApiClient) -> Result<Vec<Value>> {
    let v: Value = client.get("/api/conversations").await?.json().await?;
    Ok(v["conversations"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_hidden_then_deleted_after_retention_with_the_ledger_kept() -> Result<()> {
    let db = TestDatabase::create().await?;
    // About two seconds of retention, swept every half second.
    let server = TestServer::start(
        priced(ServerConfig::new().postgres(db.url()).lease_ttl_secs(2), "")
            .raw_toml("[gateway]\nretention_days = 0.000025\n"),
    )
    .await?;
    let key = keyed_account(&server).await?;
    let owner = ApiClient::with_api_key(&server.url(), &key);
    let run_id = one_request(&server, &key).await?;
    let run = owner.run(&run_id).await?;
    ensure!(run["status"] == "complete" && run["text"] == TEXT, "{run}");
    ensure!(
        conversations(&owner).await?.is_empty(),
        "a kept run is not listed"
    );
    wait::until(
        "the run to pass its retention",
        Duration::from_secs(20),
        || async {
            let status = owner.get(&format!("/api/runs/{run_id}")).await?.status();
            Ok((status == 404).then_some(()))
        },
    )
    .await?;
    let pool = db.pool().await?;
    let charged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE run_id = $1")
        .bind(&run_id)
        .fetch_one(&pool)
        .await?;
    ensure!(charged == 1, "the charge outlives the run: {charged} rows");
    assert_ledger_balanced(&pool).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_conversations_lists_each_request_in_the_web_client() -> Result<()> {
    let server = TestServer::start(
        priced(ServerConfig::new(), "").raw_toml("[gateway]\nkeep = \"conversations\"\n"),
    )
    .await?;
    let key = keyed_account(&server).await?;
    let owner = ApiClient::with_api_key(&server.url(), &key);
    let run_id = one_request(&server, &key).await?;
    let listed = conversations(&owner).await?;
    ensure!(
        listed.len() == 1 && listed[0]["title"] == "API: hello there",
        "{listed:?}"
    );
    let run = owner.run(&run_id).await?;
    ensure!(run["conversation_id"] == listed[0]["id"], "{run}");
    Ok(())
}

/// A NUL character, which an API client may send and PostgreSQL's text cannot hold, is
/// kept as U+FFFD in the stored copy of the request; the request is answered as any
/// other.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_is_stored_as_a_replacement_on_postgresql() -> Result<()> {
    let db = TestDatabase::create().await?;
    let server = TestServer::start(priced(ServerConfig::new().postgres(db.url()), "")).await?;
    let key = keyed_account(&server).await?;
    let pool = db.pool().await?;
    let with_nul = request_of(
        &server,
        &key,
        json!([
            {"role": "system", "content": "be\u{0}brief"},
            {"role": "user", "content": "before\u{0}after"},
        ]),
    )
    .await?;
    let (system, question): (Option<String>, String) = sqlx::query_as(
        "SELECT c.system_prompt, m.content FROM runs r JOIN conversations c ON c.id = r.conversation_id \
         JOIN messages m ON m.conversation_id = c.id AND m.role = 'user' WHERE r.id = $1",
    )
    .bind(&with_nul)
    .fetch_one(&pool)
    .await?;
    ensure!(
        system.as_deref() == Some("be\u{FFFD}brief") && question == "before\u{FFFD}after",
        "{system:?} {question:?}"
    );
    Ok(())
}
