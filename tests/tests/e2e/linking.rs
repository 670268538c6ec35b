//! Linking over HTTP, on PostgreSQL: a code issued by one account and redeemed from
//! another merges the second into the first in one transaction (conversations, runs,
//! balance, ledger history); the old account's sessions and keys stop working, its
//! name logs in to the merged account; codes are single use, and wrong ones are
//! rate limited per identity.

use crate::quota_support::*;
use anyhow::{Result, ensure};
use chorus_tests::{
    ApiClient, PASSWORD, ServerConfig, TestDatabase, TestServer, logged_in_client, unique_name,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// An account with a conversation holding one finished (charged) run.
async fn account_with_history(
    server: &TestServer,
    prefix: &str,
) -> Result<(String, ApiClient, String)> {
    let name = unique_name(prefix);
    let client = logged_in_client(server, &name).await?;
    let conversation = client.create_conversation(None).await?;
    let run = client
        .send_message(&conversation, "remember me")
        .await?
        .run_id;
    let view = client.wait_run_ended(&run, Duration::from_secs(20)).await?;
    ensure!(view["status"] == "complete", "{view}");
    Ok((name, client, conversation))
}

async fn issue(client: &ApiClient) -> Result<String> {
    let issued = expect_status(
        call(client, Method::POST, "/api/link-codes", None).await?,
        201,
    )
    .await?;
    let code = issued["code"].as_str().unwrap_or_default().to_string();
    ensure!(
        code.len() == 9
            && code.as_bytes()[4] == b'-'
            && code
                .chars()
                .all(|c| c == '-' || c.is_ascii_uppercase() || c.is_ascii_digit()),
        "not a XXXX-XXXX code: {issued}"
    );
    ensure!(
        issued["expires_at"].as_i64().unwrap_or_default() > 0,
        "{issued}"
    );
    Ok(code)
}

async fn redeem(client: &ApiClient, code: &str) -> Result<reqwest::Response> {
    call(
        client,
        Method::POST,
        "/api/link-codes/redeem",
        Some(json!({"code": code})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_code_merges_two_accounts_into_one() -> Result<()> {
    let db = TestDatabase::create().await?;
    let server = TestServer::start(priced(
        ServerConfig::new().postgres(db.url()),
        "[accounts]\ndefault_balance = 2.0\n",
    ))
    .await?;
    let (_alice, alice, alice_conv) = account_with_history(&server, "alice").await?;
    let (bob_name, bob, bob_conv) = account_with_history(&server, "bob").await?;
    let bob_key = server.create_api_key(&bob_name).await?;
    let bob_by_key = ApiClient::with_api_key(&server.url(), &bob_key);
    expect_status(bob_by_key.get("/api/me").await?, 200).await?;
    let alice_id = alice.me().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bob_id = bob.me().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (alice_before, bob_before) = (usage(&alice).await?, usage(&bob).await?);
    let balance = |u: &Value| u["balance_micros"].as_i64().unwrap_or_default();
    ensure!(
        balance(&alice_before) < 2_000_000 && balance(&bob_before) < 2_000_000,
        "both paid for a run"
    );

    let code = issue(&alice).await?;
    // Lower case and without the dash is the same code.
    let typed = code.replace('-', "").to_lowercase();
    let outcome = expect_status(redeem(&bob, &typed).await?, 200).await?;
    ensure!(
        outcome["account_id"] == alice_id.as_str()
            && outcome["merged_from"] == bob_id.as_str()
            && outcome["conversations_moved"] == 1
            && outcome["balance_moved"] == balance(&bob_before),
        "{outcome}"
    );

    // Bob's old session and key are dead; his name and password now log in to Alice's account.
    expect_error(bob.get("/api/me").await?, 401, "session_expired").await?;
    expect_error(bob_by_key.get("/api/me").await?, 401, "invalid_api_key").await?;
    let again = server.client();
    let login = again.login(&bob_name, PASSWORD).await?;
    ensure!(login["account"]["id"] == alice_id.as_str(), "{login}");

    // One account, both histories, both balances; the ledger still sums to the balance.
    let listed = expect_status(alice.get("/api/conversations").await?, 200).await?;
    let ids: Vec<&str> = listed["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    ensure!(
        ids.contains(&alice_conv.as_str()) && ids.contains(&bob_conv.as_str()),
        "{listed}"
    );
    let messages = alice.messages(&bob_conv).await?;
    ensure!(
        messages.iter().any(|m| m["content"] == TEXT),
        "bob's reply moved: {messages:?}"
    );
    let merged = usage(&again).await?;
    ensure!(
        balance(&merged) == balance(&alice_before) + balance(&bob_before),
        "{merged}"
    );
    ensure!(
        merged["by_model"][0]["runs"] == 2,
        "bob's usage history moved: {merged}"
    );
    let pool = db.pool().await?;
    assert_ledger_balanced(&pool).await?;
    let (status, into): (String, Option<String>) =
        sqlx::query_as("SELECT status, merged_into FROM accounts WHERE id = $1")
            .bind(&bob_id)
            .fetch_one(&pool)
            .await?;
    ensure!(
        status == "merged" && into.as_deref() == Some(alice_id.as_str()),
        "tombstone: {status} {into:?}"
    );
    let runs_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE account_id = $1")
        .bind(&bob_id)
        .fetch_one(&pool)
        .await?;
    ensure!(runs_left == 0, "runs moved with their conversations");

    // The merged account keeps chatting, charged to the one balance.
    let run = again.send_message(&bob_conv, "still here").await?.run_id;
    again.wait_run_ended(&run, Duration::from_secs(20)).await?;
    assert_ledger_balanced(&pool).await?;

    // Replayed: one clear error.
    let carol = logged_in_client(&server, &unique_name("carol")).await?;
    let error = expect_error(redeem(&carol, &code).await?, 400, "invalid_link_code").await?;
    ensure!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{error}"
    );
    // Your own code: refused, and it stays usable.
    let own = issue(&carol).await?;
    expect_error(redeem(&carol, &own).await?, 409, "conflict").await?;
    let dave = logged_in_client(&server, &unique_name("dave")).await?;
    expect_status(redeem(&dave, &own).await?, 200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_codes_are_named_counted_and_limited() -> Result<()> {
    let server = priced_server("[limits]\nlink_code_failures = 4\n").await?;
    let issuer = logged_in_client(&server, &unique_name("issuer")).await?;
    let guesser = logged_in_client(&server, &unique_name("guesser")).await?;

    // At most three live codes per account.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(issue(&issuer).await?);
    }
    expect_error(
        call(&issuer, Method::POST, "/api/link-codes", None).await?,
        409,
        "conflict",
    )
    .await?;

    // Malformed codes say what a code looks like; each counts as a failure.
    for bad in ["", "ABC", &"Z".repeat(500)] {
        let error = expect_error(redeem(&guesser, bad).await?, 400, "invalid_link_code").await?;
        ensure!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("ABCD-2345"),
            "{error}"
        );
    }
    expect_error(
        redeem(&guesser, "ABCD-2345").await?,
        400,
        "invalid_link_code",
    )
    .await?;
    // The limit is reached: even the right code is refused now, and stays unused.
    expect_error(redeem(&guesser, &codes[0]).await?, 429, "rate_limited").await?;
    let body = call(
        &guesser,
        Method::POST,
        "/api/link-codes/redeem",
        Some(json!({"code": 12345678})),
    )
    .await?;
    expect_error(body, 400, "malformed_json").await?;
    let other = logged_in_client(&server, &unique_name("other")).await?;
    expect_status(redeem(&other, &codes[0]).await?, 200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_limited_per_name_and_address() -> Result<()> {
    let server = priced_server("[limits]\nlogin_failures = 3\n").await?;
    let name = unique_name("target");
    server.create_user(&name, PASSWORD).await?;
    let other = unique_name("bystander");
    server.create_user(&other, PASSWORD).await?;
    let client = server.client();
    let login = |user: String, password: &'static str| {
        let client = client.clone();
        async move {
            call(
                &client,
                Method::POST,
                "/api/auth/login",
                Some(json!({"name": user, "password": password})),
            )
            .await
        }
    };
    for _ in 0..3 {
        expect_error(
            login(name.clone(), "wrong password!").await?,
            401,
            "invalid_credentials",
        )
        .await?;
    }
    // The limit is reached: even the right password waits out the window.
    let error = expect_error(login(name.clone(), PASSWORD).await?, 429, "rate_limited").await?;
    ensure!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("try again"),
        "{error}"
    );
    // Other names are not affected.
    expect_status(login(other, PASSWORD).await?, 200).await?;
    Ok(())
}
