//! What the ledger, linking and authorization tests share: servers with quotas,
//! JSON calls that check status and error shape, and white-box ledger checks.

use anyhow::{Context, Result, ensure};
use chorus_tests::{ApiClient, ServerConfig, TestServer};
use reqwest::{Method, Response};
use serde_json::Value;

/// The scripted reply of these tests (8 tokens).
pub const TEXT: &str = "one two three four five six seven eight";

/// Prices of the scripted model, in credits per million tokens.
pub const PROMPT_PRICE: f64 = 1000.0;
pub const COMPLETION_PRICE: f64 = 2000.0;

/// A server config with the scripted model priced, quotas enforced (a run reserves
/// 16 completion tokens, twice the scripted reply), `extra` TOML sections appended.
pub fn priced(config: ServerConfig, extra: &str) -> ServerConfig {
    priced_at(config, extra, 200.0)
}

/// [`priced`] with the scripted model writing `tokens_per_sec`: a slow one keeps a
/// run streaming while a test acts on it, however loaded the machine is.
pub fn priced_at(config: ServerConfig, extra: &str, tokens_per_sec: f64) -> ServerConfig {
    let mut model_info = toml::Table::new();
    let mut demo = toml::Table::new();
    demo.insert("prompt_price".into(), PROMPT_PRICE.into());
    demo.insert("completion_price".into(), COMPLETION_PRICE.into());
    model_info.insert("demo".into(), toml::Value::Table(demo));
    config
        .scripted("s", TEXT, tokens_per_sec)
        .provider_setting("s", "model_info", toml::Value::Table(model_info))
        .raw_toml(&format!(
            "[quota]\nenabled = true\nreserve_output_tokens = 16\n{extra}"
        ))
}

pub async fn priced_server(extra: &str) -> Result<TestServer> {
    TestServer::start(priced(ServerConfig::new(), extra)).await
}

/// Micro-credits a run with these token counts costs.
pub fn cost_micros(prompt: i64, completion: i64) -> i64 {
    (prompt as f64 * PROMPT_PRICE + completion as f64 * COMPLETION_PRICE).ceil() as i64
}

/// Checks the status and the `{error: {code, message}}` shape; returns the error.
pub async fn expect_error(resp: Response, status: u16, code: &str) -> Result<Value> {
    let got = resp.status();
    let body = resp.text().await?;
    ensure!(
        got.as_u16() == status,
        "expected HTTP {status} {code}, got {got}: {body}"
    );
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("HTTP {got}: body is not JSON: {body}"))?;
    ensure!(
        v["error"]["code"] == code && v["error"]["message"].is_string(),
        "expected {{error: {{code: {code}, message}}}}: {body}"
    );
    Ok(v["error"].clone())
}

/// Checks the status; returns the JSON body (or null for an empty one).
pub async fn expect_status(resp: Response, status: u16) -> Result<Value> {
    let got = resp.status();
    let body = resp.text().await?;
    ensure!(
        got.as_u16() == status,
        "expected HTTP {status}, got {got}: {body}"
    );
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).with_context(|| format!("body is not JSON: {body}"))
}

/// A JSON request.
pub async fn call(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Response> {
    let mut req = client.request(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    Ok(req.send().await?)
}

/// `GET /api/me/usage`.
pub async fn usage(client: &ApiClient) -> Result<Value> {
    expect_status(client.get("/api/me/usage").await?, 200).await
}

/// Fails unless every account's balance equals the sum of its ledger; returns the
/// number of accounts checked.
pub async fn assert_ledger_balanced(pool: &sqlx::PgPool) -> Result<usize> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.name, a.balance, CAST(COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.account_id = a.id), 0) AS BIGINT) \
         FROM accounts a",
    )
    .fetch_all(pool)
    .await?;
    for (name, balance, sum) in &rows {
        ensure!(
            balance == sum,
            "account {name}: balance {balance} but ledger sums to {sum}"
        );
    }
    Ok(rows.len())
}

/// `YYYY-MM-DD` (UTC) of a Unix-ms timestamp, as the usage report names days.
pub fn utc_day(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (
        doy - (153 * mp + 2) / 5 + 1,
        if mp < 10 { mp + 3 } else { mp - 9 },
    );
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}
