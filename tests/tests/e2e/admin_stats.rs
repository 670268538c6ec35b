//! The console's figures and an account's own refill, over HTTP: two instances on
//! one PostgreSQL database, replies served by one and the overview read on the other
//! (the rollup counts them at once; the providers' health arrives as the serving
//! instance publishes it), the charts and the Providers page drawn from them; and an
//! admin's per-account refill (refused out of range, audited, applied by the refill
//! that admits a run, cleared back to the default).

use crate::admin_console::{account_id, admin_client};
use crate::quota_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::wait::until;
use chorus_tests::{ServerConfig, TestDatabase, TestServer, logged_in_client, script, unique_name};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn sum(buckets: &Value, field: &str) -> i64 {
    buckets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b[field].as_i64())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_and_providers_pages_count_every_instance() -> Result<()> {
    let db = TestDatabase::create().await?;
    let config = ServerConfig::new()
        .scripted("s", &script(8), 400.0)
        .postgres(db.url());
    let serving = TestServer::start(config.clone().instance_id("stats-a")).await?;
    let reading = TestServer::start(config.instance_id("stats-b")).await?;
    let admin = admin_client(&reading).await?;

    // Two replies served by the first instance.
    let name = unique_name("dora");
    let dora = logged_in_client(&serving, &name).await?;
    let conversation = dora.create_conversation(None).await?;
    for text in ["one", "two"] {
        let sent = dora.send_message(&conversation, text).await?;
        dora.wait_run_ended(&sent.run_id, Duration::from_secs(20))
            .await?;
    }

    // The second instance's overview counts them in every window, with their tokens.
    let o = expect_status(admin.get("/api/admin/overview").await?, 200).await?;
    let a = &o["activity"];
    for (window, buckets) in [("last_hour", 60), ("last_day", 24), ("last_30_days", 30)] {
        ensure!(
            a[window].as_array().map(Vec::len) == Some(buckets),
            "{window}: {a}"
        );
        ensure!(sum(&a[window], "replies") == 2, "{window}: {a}");
        ensure!(sum(&a[window], "failed") == 0, "{window}: {a}");
        ensure!(sum(&a[window], "completion_tokens") > 0, "{window}: {a}");
    }
    ensure!(a["replies_per_minute"].as_f64() == Some(0.4), "{a}");
    ensure!(a["error_rate_hour"].as_f64() == Some(0.0), "{a}");

    // The serving instance's provider figures reach the reader's Providers page.
    let page = until(
        "the serving instance's figures",
        Duration::from_secs(15),
        || async {
            let p = expect_status(admin.get("/api/admin/providers").await?, 200).await?;
            let s = p["providers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["id"] == "s")
                .cloned()
                .unwrap_or_default();
            let from_a = s["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["instance_id"] == "stats-a" && i["attempts"].as_i64() >= Some(2));
            Ok(from_a.then_some(p))
        },
    )
    .await?;
    let s = &page["providers"][0];
    ensure!(
        s["id"] == "s" && s["attempts"].as_i64() >= Some(2),
        "{page}"
    );
    ensure!(s["error_rate"].as_f64() == Some(0.0), "{page}");
    ensure!(s["first_token_p50_ms"].is_i64(), "{page}");
    let instances: Vec<&str> = s["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["instance_id"].as_str())
        .collect();
    ensure!(
        instances.contains(&"stats-a") && instances.contains(&"stats-b"),
        "{instances:?}"
    );
    ensure!(
        page["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == "s/demo")),
        "{page}"
    );

    // The pages draw them: 60, 24 and 30 bars, the providers of both instances.
    let html = admin.get("/admin?metric=tokens").await?.text().await?;
    for (chart, bars) in [("chart-hour", 60), ("chart-day", 24), ("chart-month", 30)] {
        let svg = html
            .split(&format!("id=\"{chart}\""))
            .nth(1)
            .and_then(|rest| rest.split("</svg>").next())
            .with_context(|| format!("no {chart} on the overview"))?;
        ensure!(
            svg.matches("<rect").count() == bars,
            "{chart} has not {bars} bars"
        );
    }
    ensure!(
        html.contains("2 replies (0 failed)"),
        "no bar says 2 replies"
    );
    let html = admin.get("/admin/providers").await?.text().await?;
    ensure!(
        html.contains("stats-a") && html.contains("stats-b") && html.contains("s/demo"),
        "{html}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_s_own_refill_is_audited_and_lets_it_run() -> Result<()> {
    let server = priced_server("").await?;
    let admin = admin_client(&server).await?;
    let name = unique_name("erin");
    let erin = logged_in_client(&server, &name).await?;
    let id = account_id(&admin, &name).await?;
    let conversation = erin.create_conversation(None).await?;
    let messages = format!("/api/conversations/{conversation}/messages");
    let send = || {
        call(
            &erin,
            Method::POST,
            &messages,
            Some(json!({"content": "hi"})),
        )
    };
    // No balance and no default refill: refused.
    expect_error(send().await?, 402, "insufficient_balance").await?;

    let refill = format!("/api/admin/accounts/{id}/refill");
    for bad in [
        json!({"amount": -1}),
        json!({"amount": 1, "interval_secs": 5}),
        json!({"amount": 1e12}),
    ] {
        expect_error(
            call(&admin, Method::PUT, &refill, Some(bad.clone())).await?,
            400,
            "invalid_request",
        )
        .await?;
    }
    let set = expect_status(
        call(
            &admin,
            Method::PUT,
            &refill,
            Some(json!({"amount": 0.1, "interval_secs": 3600})),
        )
        .await?,
        200,
    )
    .await?;
    ensure!(set["refill_interval_secs"] == 3600, "{set}");
    let detail = expect_status(admin.get(&format!("/api/admin/accounts/{id}")).await?, 200).await?;
    ensure!(
        detail["refill_amount"] == 100_000 && detail["refill_interval_secs"] == 3600,
        "{detail}"
    );

    // The next message is admitted after one refill of the account's own amount.
    let sent: Value = expect_status(send().await?, 202).await?;
    let run = sent["run_id"].as_str().context("no run id")?;
    erin.wait_run_ended(run, Duration::from_secs(20)).await?;
    let detail = expect_status(admin.get(&format!("/api/admin/accounts/{id}")).await?, 200).await?;
    let refills: Vec<&Value> = detail["ledger"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "refill")
        .collect();
    ensure!(
        refills.len() == 1 && refills[0]["amount"] == 100_000,
        "{detail}"
    );
    // The account page charts the usage and says whose refill applies.
    ensure!(
        detail["usage"]["by_model"][0]["key"] == "s/demo",
        "{detail}"
    );
    let page = admin
        .get(&format!("/admin/accounts/{id}"))
        .await?
        .text()
        .await?;
    ensure!(
        page.contains("id=\"chart-usage\"") && page.contains("(its own)"),
        "{page}"
    );

    // Audited with before and after; cleared back to the default.
    let audit = expect_status(
        admin
            .get(&format!("/api/admin/audit?object={id}&action=set_refill"))
            .await?,
        200,
    )
    .await?;
    let entry = &audit["entries"][0];
    ensure!(
        entry["before"]["refill_amount"].is_null() && entry["after"]["refill_amount"] == 100_000,
        "{audit}"
    );
    expect_status(
        call(&admin, Method::PUT, &refill, Some(json!({"amount": null}))).await?,
        200,
    )
    .await?;
    let detail = expect_status(admin.get(&format!("/api/admin/accounts/{id}")).await?, 200).await?;
    ensure!(
        detail["refill_amount"].is_null() && detail["refill_interval_secs"].is_null(),
        "{detail}"
    );
    Ok(())
}
