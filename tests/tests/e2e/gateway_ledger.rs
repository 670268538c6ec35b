//! Gateway requests are admitted and charged like every run. 200 concurrent requests
//! on a balance that covers about 50: each answered with a reply or with OpenAI's 429
//! `insufficient_quota` (runs in flight hold what they reserved), then requests one at
//! a time answered until the balance cannot cover one reservation, every reply charged
//! once, and the
//! balance equal to the ledger's sum (PostgreSQL); a second crowd on the spent
//! balance is refused whole and charged nothing. The message rate limit and the
//! concurrency limit answer 429 `rate_limit_exceeded` (Anthropic: `rate_limit_error`)
//! with `Retry-After`.

use crate::quota_support::{TEXT, assert_ledger_balanced, cost_micros, priced};
use anyhow::{Result, ensure};
use chorus_tests::{ServerConfig, TestDatabase, TestServer, unique_name};
use futures::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;

const REQUESTS: usize = 200;

async fn complete(http: &reqwest::Client, url: &str, key: &str) -> Result<(u16, Value)> {
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "s/demo", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_gateway_requests_on_one_balance_keep_the_ledger_exact() -> Result<()> {
    let db = TestDatabase::create().await?;
    let server = TestServer::start(priced(ServerConfig::new().postgres(db.url()), "")).await?;
    let name = unique_name("crowd");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    let key = server.create_api_key(&name).await?;
    // What one reply costs, measured on a first one.
    server.cli(&["user", "grant", &name, "1"], None).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let (status, first) = complete(&http, &server.url(), &key).await?;
    ensure!(
        status == 200 && first["choices"][0]["message"]["content"] == TEXT,
        "{first}"
    );
    let one = cost_micros(
        first["usage"]["prompt_tokens"].as_i64().unwrap_or_default(),
        first["usage"]["completion_tokens"]
            .as_i64()
            .unwrap_or_default(),
    );
    // Enough for about a quarter of the crowd.
    let pool = db.pool().await?;
    let balance_now: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE name = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await?;
    let grant = one * (REQUESTS as i64 / 4) - balance_now;
    server
        .cli(
            &["user", "grant", &name, &format!("{}", grant as f64 / 1e6)],
            None,
        )
        .await?;

    let url = server.url();
    let crowd = || join_all((0..REQUESTS).map(|_| complete(&http, &url, &key)));
    let results = crowd().await;
    let mut replies = 0i64;
    let mut refused = 0i64;
    for r in results {
        let (status, body) = r?;
        match status {
            200 => {
                ensure!(body["choices"][0]["message"]["content"] == TEXT, "{body}");
                replies += 1;
            }
            429 => {
                ensure!(
                    body["error"]["code"] == "insufficient_quota"
                        && body["error"]["type"] == "insufficient_quota",
                    "{body}"
                );
                refused += 1;
            }
            other => anyhow::bail!("unexpected HTTP {other}: {body}"),
        }
    }
    ensure!(
        replies + refused == REQUESTS as i64,
        "{replies} replies, {refused} refusals"
    );
    ensure!(
        replies > 0 && refused > 0,
        "{replies} replies, {refused} refusals"
    );
    // In the crowd a request may be refused while runs in flight hold the balance
    // (each reserves its prompt and `reserve_output_tokens` at admission). One at a
    // time, requests go on being answered until the balance cannot cover one
    // reservation: refusals start once it is spent, not before.
    let reserve = cost_micros(
        first["usage"]["prompt_tokens"].as_i64().unwrap_or_default(),
        16,
    )
    .max(one);
    let mut drained = 0i64;
    loop {
        let (status, body) = complete(&http, &url, &key).await?;
        match status {
            200 => drained += 1,
            429 if body["error"]["code"] == "insufficient_quota" => break,
            other => anyhow::bail!("unexpected HTTP {other}: {body}"),
        }
        ensure!(drained <= REQUESTS as i64, "the balance never ran out");
    }
    let replies = replies + drained;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE name = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await?;
    ensure!(
        balance < 2 * reserve,
        "refused with {balance} micro-credits left (a reservation is about {reserve})"
    );
    ensure!(
        balance == grant + balance_now - replies * one,
        "balance {balance} after {replies} replies of {one} from {}",
        grant + balance_now
    );
    // Every reply (and the first) charged once.
    let charged: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger l JOIN accounts a ON a.id = l.account_id \
         WHERE a.name = $1 AND l.reason = 'run_usage'",
    )
    .bind(&name)
    .fetch_one(&pool)
    .await?;
    ensure!(
        charged == replies + 1,
        "{charged} charges for {} replies",
        replies + 1
    );
    assert_ledger_balanced(&pool).await?;
    // Spent: a second crowd is refused whole, and nothing more is charged.
    for r in crowd().await {
        let (status, body) = r?;
        ensure!(
            status == 429 && body["error"]["code"] == "insufficient_quota",
            "{status} {body}"
        );
    }
    let after: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE name = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await?;
    ensure!(
        after == balance,
        "a refused request changed the balance: {balance} -> {after}"
    );
    assert_ledger_balanced(&pool).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_and_concurrency_limits_answer_429_with_retry_after() -> Result<()> {
    let server = TestServer::start(priced(
        ServerConfig::new(),
        "[limits]\nmessages_per_window = 2\nwindow_secs = 120\n",
    ))
    .await?;
    let name = unique_name("hasty");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    server.cli(&["user", "grant", &name, "10"], None).await?;
    let key = server.create_api_key(&name).await?;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let (status, body) = complete(&http, &server.url(), &key).await?;
        ensure!(status == 200, "{body}");
    }
    let resp = http
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&key)
        .json(&json!({"model": "s/demo", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    ensure!(resp.status() == 429, "{}", resp.status());
    ensure!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            == Some("120"),
        "{:?}",
        resp.headers()
    );
    let body: Value = resp.json().await?;
    ensure!(body["error"]["code"] == "rate_limit_exceeded", "{body}");
    // The same limit in Anthropic's shape.
    let resp = http
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", &key)
        .json(&json!({"model": "s/demo", "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    ensure!(
        resp.status() == 429 && resp.headers().contains_key("retry-after"),
        "{}",
        resp.status()
    );
    let body: Value = resp.json().await?;
    ensure!(
        body["type"] == "error" && body["error"]["type"] == "rate_limit_error",
        "{body}"
    );

    // One reply at a time: a second while the first streams (two seconds) is refused.
    let server = TestServer::start(priced(
        ServerConfig::new().scripted("slow", &chorus_tests::script(40), 20.0),
        "[limits]\nmax_concurrent_runs = 1\n",
    ))
    .await?;
    let name = unique_name("busy");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    server.cli(&["user", "grant", &name, "10"], None).await?;
    let key = server.create_api_key(&name).await?;
    let streaming = http
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&key)
        .json(&json!({"model": "slow/demo", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    ensure!(streaming.status() == 200);
    let resp = http
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&key)
        .json(&json!({"model": "s/demo", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    let retry = resp.headers().get("retry-after").cloned();
    let status = resp.status();
    let body: Value = resp.json().await?;
    ensure!(
        status == 429 && body["error"]["code"] == "rate_limit_exceeded" && retry.is_some(),
        "{status} {body}"
    );
    let rest = streaming.text().await?;
    ensure!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    Ok(())
}

/// A client that sends its next request the moment the last one ended is never
/// refused by a concurrency limit of one. On SQLite a gateway reply ends before its
/// run's end is committed (the end is queued on the one writer, which applies the
/// next admission after it); on PostgreSQL the end is committed first. Streaming and
/// not, on both backends, each reply charged.
#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_requests_at_a_concurrency_limit_of_one_are_admitted() -> Result<()> {
    let db = TestDatabase::create().await?;
    for postgres in [false, true] {
        let config = if postgres {
            ServerConfig::new().postgres(db.url())
        } else {
            ServerConfig::new()
        };
        let server =
            TestServer::start(priced(config, "[limits]\nmax_concurrent_runs = 1\n")).await?;
        let name = unique_name("serial");
        server.create_user(&name, chorus_tests::PASSWORD).await?;
        server.cli(&["user", "grant", &name, "10"], None).await?;
        let key = server.create_api_key(&name).await?;
        let http = reqwest::Client::new();
        for i in 0..20 {
            let streaming = i % 2 == 1;
            let resp = http
                .post(format!("{}/v1/chat/completions", server.url()))
                .bearer_auth(&key)
                .json(&json!({"model": "s/demo", "stream": streaming,
                    "messages": [{"role": "user", "content": "hello"}]}))
                .send()
                .await?;
            let status = resp.status();
            let body = resp.text().await?;
            ensure!(
                status == 200,
                "request {i} (postgres: {postgres}, streaming: {streaming}): {status} {body}"
            );
            ensure!(
                if streaming {
                    body.ends_with("data: [DONE]\n\n")
                } else {
                    body.contains(TEXT)
                },
                "request {i}: {body}"
            );
        }
        // Every reply charged (the last end may still be in the writer's queue).
        chorus_tests::wait::until(
            "the 20 runs to be charged",
            Duration::from_secs(10),
            || async {
                let usage: Value = http
                    .get(format!("{}/api/me/usage", server.url()))
                    .bearer_auth(&key)
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok((usage["by_model"][0]["runs"] == 20).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}
