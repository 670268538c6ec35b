//! A gateway client that disconnects mid-stream. By default the run goes on to the
//! end, is charged once, and its rest is readable from `/api/runs/{id}/events` with
//! the `x-chorus-run-id` the response carried; with `[gateway]
//! cancel_on_disconnect = true` the run is stopped instead, and charged once for what
//! it used.

use crate::quota_support::{COMPLETION_PRICE, PROMPT_PRICE, assert_ledger_balanced, cost_micros};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::{
    ApiClient, Resume, ServerConfig, TestDatabase, TestServer, script, unique_name,
};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

/// 40 tokens at 20 a second: two seconds of streaming to disconnect from.
const TOKENS: usize = 40;

async fn server(db: &TestDatabase, extra: &str) -> Result<(TestServer, String)> {
    let mut model_info = toml::Table::new();
    let mut demo = toml::Table::new();
    demo.insert("prompt_price".into(), PROMPT_PRICE.into());
    demo.insert("completion_price".into(), COMPLETION_PRICE.into());
    model_info.insert("demo".into(), toml::Value::Table(demo));
    let config = ServerConfig::new()
        .postgres(db.url())
        .scripted("slow", &script(TOKENS), 20.0)
        .provider_setting("slow", "model_info", toml::Value::Table(model_info))
        .raw_toml(&format!("[quota]\nenabled = true\n{extra}"));
    let server = TestServer::start(config).await?;
    let name = unique_name("dropper");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    server.cli(&["user", "grant", &name, "10"], None).await?;
    let key = server.create_api_key(&name).await?;
    Ok((server, key))
}

/// Starts a streaming completion, reads until the first text chunk, and hangs up;
/// returns the run id from `x-chorus-run-id`.
async fn stream_and_hang_up(server: &TestServer, key: &str) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(key)
        .json(&json!({"model": "slow/demo", "stream": true, "messages": [{"role": "user", "content": "tell me"}]}))
        .send()
        .await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    let run_id = resp
        .headers()
        .get("x-chorus-run-id")
        .and_then(|v| v.to_str().ok())
        .context("no x-chorus-run-id header")?
        .to_string();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let first_text = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk?));
            if seen.contains("\"content\":\"Chorus0") {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("the stream ended before any text: {seen}")
    })
    .await;
    first_text.context("no text within 10 s")??;
    ensure!(
        !seen.contains("[DONE]"),
        "the stream ended before the hang-up: {seen}"
    );
    drop(body); // the client goes away mid-stream
    Ok(run_id)
}

/// The ledger rows of one run: (count, sum).
async fn charges(db: &TestDatabase, run_id: &str) -> Result<(i64, i64)> {
    let pool = db.pool().await?;
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_one(&pool)
    .await?;
    assert_ledger_balanced(&pool).await?;
    Ok(row)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_client_leaves_the_run_going_charged_once_and_readable() -> Result<()> {
    let db = TestDatabase::create().await?;
    let (server, key) = server(&db, "").await?;
    let run_id = stream_and_hang_up(&server, &key).await?;
    let owner = ApiClient::with_api_key(&server.url(), &key);
    let run = owner
        .wait_run_ended(&run_id, Duration::from_secs(20))
        .await?;
    ensure!(
        run["status"] == "complete" && run["text"] == script(TOKENS),
        "the run went on to its end: {run}"
    );
    // The rest is in the journal, from the start or after what the client saw.
    let events = owner.events_to_finished(&run_id, Resume::Start).await?;
    ensure!(delta_text(&events) == script(TOKENS), "{events:?}");
    let rest = owner.events_to_finished(&run_id, Resume::After(3)).await?;
    ensure!(
        rest.first().map(|e| e.seq) == Some(4) && rest.last().is_some_and(|e| e.is_finished()),
        "{rest:?}"
    );
    let (rows, sum) = charges(&db, &run_id).await?;
    let cost = cost_micros(
        run["prompt_tokens"].as_i64().unwrap_or_default(),
        run["completion_tokens"].as_i64().unwrap_or_default(),
    );
    ensure!(
        rows == 1 && sum == -cost,
        "charged once, {cost}: {rows} rows, {sum}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_on_disconnect_stops_the_run_and_charges_it_once() -> Result<()> {
    let db = TestDatabase::create().await?;
    let (server, key) = server(&db, "[gateway]\ncancel_on_disconnect = true\n").await?;
    let run_id = stream_and_hang_up(&server, &key).await?;
    let owner = ApiClient::with_api_key(&server.url(), &key);
    let run = owner
        .wait_run_ended(&run_id, Duration::from_secs(20))
        .await?;
    let text = run["text"].as_str().unwrap_or_default();
    ensure!(
        run["status"] == "stopped"
            && !text.is_empty()
            && script(TOKENS).starts_with(text)
            && text != script(TOKENS),
        "the run was stopped part way: {run}"
    );
    let events = owner.events_to_finished(&run_id, Resume::Start).await?;
    ensure!(delta_text(&events) == text, "{events:?}");
    let (rows, sum) = charges(&db, &run_id).await?;
    ensure!(
        rows == 1 && sum < 0,
        "charged once for what it used: {rows} rows, {sum}"
    );
    Ok(())
}
