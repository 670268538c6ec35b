//! `[gateway] early_upstream`: a request's provider call goes out while its admission
//! is written, and only for an account in good standing.
//!
//! The test holds the account's row locked (PostgreSQL), so an admission cannot
//! finish, and watches the upstream (the fake OpenAI API records every call and
//! whether its client hung up): the call arrives while the admission waits. Once the
//! lock is released, an admitted request has made exactly one call (the run reads
//! the early call, it makes no second); a request the concurrency limit refused had
//! its call cancelled; after that refusal the account's next request waits for its
//! admission, so its refusal costs no call; and with `early_upstream = false` no
//! refused request ever calls.

use crate::quota_support::priced;
use anyhow::{Context, Result, ensure};
use chorus_tests::wait::until;
use chorus_tests::{FakeOpenAi, ServerConfig, TestDatabase, TestServer, unique_name};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

const MODEL: &str = "oai/gpt-4o-mini";

/// A server on `db` with the fake upstream, one run at a time per account, and an
/// account with credits: its name and API key.
async fn server(
    db: &TestDatabase,
    upstream: &FakeOpenAi,
    early: bool,
) -> Result<(TestServer, String, String)> {
    let config = priced(
        ServerConfig::new().postgres(db.url()).openai(
            "oai",
            &upstream.base_url(),
            "sk-fake",
            &["gpt-4o-mini"],
        ),
        &format!("[limits]\nmax_concurrent_runs = 1\n[gateway]\nearly_upstream = {early}\n"),
    );
    let server = TestServer::start(config).await?;
    let name = unique_name("early");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    server.cli(&["user", "grant", &name, "10"], None).await?;
    let key = server.create_api_key(&name).await?;
    Ok((server, name, key))
}
/// A completion of `content`: its status and body (JSON, or the SSE text).
async fn complete(server: &TestServer, key: &str, content: &str) -> Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(key)
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": content}]}))
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

/// How many calls the upstream received whose last user message is `content`, and
/// how many of them the caller hung up on.
fn calls(upstream: &FakeOpenAi, content: &str) -> (usize, usize) {
    let calls: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.last_user_text() == content)
        .collect();
    let hung_up = calls.iter().filter(|r| r.client_hung_up()).count();
    (calls.len(), hung_up)
}

/// Starts a slow streaming completion and reads it until its first text, so the
/// account's one concurrent run is taken; the caller keeps the body to finish it.
async fn hold_the_one_run(
    server: &TestServer,
    key: &str,
) -> Result<impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + use<>> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(key)
        .json(&json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "[slow] hold"}]}))
        .send()
        .await?;
    ensure!(
        resp.status() == 200,
        "the holding request: {}",
        resp.status()
    );
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains("\"content\":") {
            let chunk = body.next().await.context("the stream ended")??;
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("no text within 20 s")??;
    Ok(body)
}

/// Reads a held stream to its end and checks it completed.
async fn finish(body: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>) -> Result<()> {
    let mut body = std::pin::pin!(body);
    let mut rest = String::new();
    while let Some(chunk) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk?));
    }
    ensure!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    Ok(())
}

/// Sends a completion of `content` while the account's row is locked, so its
/// admission cannot be written; waits until the upstream received its call, then
/// lets the admission go on. Returns the completion's status and body.
async fn call_before_admission(
    db: &TestDatabase,
    server: &TestServer,
    name: &str,
    key: &str,
    upstream: &FakeOpenAi,
    content: &'static str,
) -> Result<(u16, Value)> {
    let pool = db.pool().await?;
    let mut lock = pool.begin().await?;
    sqlx::query("SELECT id FROM accounts WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_one(&mut *lock)
        .await?;
    let (url, key) = (server.url(), key.to_string());
    let request = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": content}]}))
            .send()
            .await?;
        Ok::<_, anyhow::Error>((resp.status().as_u16(), resp.json::<Value>().await?))
    });
    let reached = until(
        "the call to reach the upstream while the admission waits",
        Duration::from_secs(10),
        || async { Ok((calls(upstream, content).0 > 0).then_some(())) },
    )
    .await;
    // The response waits for the admission, which waits for the lock.
    let waiting = !request.is_finished();
    lock.commit().await?;
    reached?;
    ensure!(
        waiting,
        "the request was answered while its account's row was locked"
    );
    request.await?
}

#[tokio::test(flavor = "multi_thread")]
async fn early_calls_are_read_once_and_cancelled_when_refused() -> Result<()> {
    let db = TestDatabase::create().await?;
    let upstream = FakeOpenAi::start().await?;
    let (server, name, key) = server(&db, &upstream, true).await?;

    // Admitted: the call went out before the admission was written, and the run read
    // it: one call upstream, none hung up on.
    let (status, body) =
        call_before_admission(&db, &server, &name, &key, &upstream, "first").await?;
    ensure!(status == 200, "{body}");
    ensure!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    ensure!(
        calls(&upstream, "first") == (1, 0),
        "the admitted request's calls upstream (made, hung up on): {:?}",
        calls(&upstream, "first")
    );
    // Not asked to stream: neither was the upstream.
    let sent = upstream.requests();
    let first = sent.iter().find(|r| r.last_user_text() == "first");
    ensure!(
        first.is_some_and(|r| r.body["stream"] == false),
        "the admitted request's call: {:?}",
        first.map(|r| &r.body)
    );

    // The concurrency limit refuses the next request after its call went out: the
    // call is cancelled during the reply, which paces 40 chunks over six seconds.
    let held = hold_the_one_run(&server, &key).await?;
    let (status, body) =
        call_before_admission(&db, &server, &name, &key, &upstream, "[slow] refused early").await?;
    ensure!(
        status == 429 && body["error"]["code"] == "rate_limit_exceeded",
        "{status} {body}"
    );
    until(
        "the refused request's early call to be cancelled",
        Duration::from_secs(10),
        || async { Ok((calls(&upstream, "[slow] refused early") == (1, 1)).then_some(())) },
    )
    .await?;

    // Refused a moment ago: the next request waits for its admission, and its refusal
    // costs no call at all.
    let (status, body) = complete(&server, &key, "[slow] refused late").await?;
    ensure!(status == 429, "{status} {body}");
    finish(held).await?;
    ensure!(
        calls(&upstream, "[slow] refused late") == (0, 0),
        "a request refused after a refusal reached the upstream"
    );
    // Admitted again: one call per request.
    let (status, body) = complete(&server, &key, "again").await?;
    ensure!(status == 200, "{body}");
    ensure!(
        calls(&upstream, "again") == (1, 0),
        "{:?}",
        calls(&upstream, "again")
    );
    crate::quota_support::assert_ledger_balanced(&db.pool().await?).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_early_upstream_a_refused_request_never_calls() -> Result<()> {
    let db = TestDatabase::create().await?;
    let upstream = FakeOpenAi::start().await?;
    let (server, _, key) = server(&db, &upstream, false).await?;
    let held = hold_the_one_run(&server, &key).await?;
    let (status, body) = complete(&server, &key, "[slow] refused").await?;
    ensure!(status == 429, "{status} {body}");
    finish(held).await?;
    ensure!(
        calls(&upstream, "[slow] refused") == (0, 0),
        "a refused request reached the upstream"
    );
    let (status, body) = complete(&server, &key, "admitted").await?;
    ensure!(status == 200, "{body}");
    ensure!(calls(&upstream, "admitted") == (1, 0));
    Ok(())
}
