//! Authorization: every route that takes an id, called by another account (with its
//! session and with its API key) on the owner's ids, answers 404 (as for an id that
//! does not exist) and changes nothing. The routes are read from the router's source,
//! so a new route with an id fails this test until it is covered here.

use crate::quota_support::*;
use anyhow::{Result, bail, ensure};
use chorus_tests::{ApiClient, ServerConfig, TestServer, logged_in_client, script, unique_name};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Every id-taking route: method, path template, body.
fn cases() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/conversations/{id}", None),
        (
            Method::PATCH,
            "/api/conversations/{id}",
            Some(json!({"title": "taken over"})),
        ),
        (Method::DELETE, "/api/conversations/{id}", None),
        (
            Method::POST,
            "/api/conversations/{id}/messages",
            Some(json!({"content": "hijack"})),
        ),
        (Method::GET, "/api/runs/{id}", None),
        (Method::GET, "/api/runs/{id}/events", None),
        (Method::POST, "/api/runs/{id}/stop", None),
        (Method::POST, "/api/runs/{id}/continue", None),
        (Method::DELETE, "/api/keys/{id}", None),
        (Method::GET, "/api/conversations/{id}/files", None),
        (Method::GET, "/api/conversations/{id}/files/{*path}", None),
        (Method::GET, "/api/conversations/{id}/tools", None),
        (
            Method::PUT,
            "/api/conversations/{id}/tools",
            Some(json!({"tools": []})),
        ),
        (Method::DELETE, "/api/me/identities/{id}", None),
        (Method::DELETE, "/api/me/sessions/{id}", None),
    ]
}

/// (METHOD, path) of every route with a path parameter, from the router's source.
fn routed_with_ids() -> BTreeSet<(String, String)> {
    let source = include_str!("../../../adapters/web/src/api/mod.rs");
    let routes_fn = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for segment in routes_fn.split(".route(").skip(1) {
        let Some(path) = segment.split('"').nth(1) else {
            continue;
        };
        // The SSO flow's `{provider}` names a configured login provider, not an
        // account's object.
        if !path.contains('{') || path.starts_with("/api/auth/sso/") {
            continue;
        }
        for method in ["get", "post", "patch", "put", "delete"] {
            if segment.contains(&format!("{method}(")) {
                out.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_route_with_an_id_is_covered() {
    let covered: BTreeSet<(String, String)> = cases()
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let routed = routed_with_ids();
    assert!(!routed.is_empty());
    let missing: Vec<_> = routed.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes taking an id not covered by the authorization test (add them to cases()): {missing:?}"
    );
}

/// What the owner's objects look like; must be identical before and after the attack.
async fn snapshot(owner: &ApiClient, conversation: &str, run: &str) -> Result<Value> {
    let conv = owner.conversation(conversation).await?;
    let run = owner.run(run).await?;
    let keys = expect_status(owner.get("/api/keys").await?, 200).await?;
    let identities = expect_status(owner.get("/api/me/identities").await?, 200).await?;
    let sessions = expect_status(owner.get("/api/me/sessions").await?, 200).await?;
    let tools = expect_status(
        owner
            .get(&format!("/api/conversations/{conversation}/tools"))
            .await?,
        200,
    )
    .await?;
    Ok(json!({
        "identities": identities,
        "sessions": sessions["sessions"].as_array().map(|s| s.iter().map(|s| s["id"].clone()).collect::<Vec<_>>()),
        "tools": tools,
        "title": conv["title"],
        "messages": conv["messages"],
        "run": {"status": run["status"], "text": run["text"]},
        "keys": keys["api_keys"].as_array().map(|k| k.iter().map(|k| json!([k["id"], k["revoked_at"]])).collect::<Vec<_>>()),
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_ids_are_not_found_and_untouched() -> Result<()> {
    let text = script(60);
    let server = TestServer::start(ServerConfig::new().scripted("s", &text, 30.0)).await?;
    let owner = logged_in_client(&server, &unique_name("owner")).await?;
    let conversation = owner.create_conversation(None).await?;
    let sent = owner.send_message(&conversation, "mine").await?;
    chorus_tests::wait::until("some text", Duration::from_secs(10), || async {
        Ok((!owner.run(&sent.run_id).await?["text"]
            .as_str()
            .unwrap_or_default()
            .is_empty())
        .then_some(()))
    })
    .await?;
    owner.stop(&sent.run_id).await?;
    let stopped = owner
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(stopped["status"] == "stopped", "{stopped}");
    let key = expect_status(
        call(
            &owner,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "owner"})),
        )
        .await?,
        201,
    )
    .await?;
    let key_id = key["api_key"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let owner_key = key["key"].as_str().unwrap_or_default().to_string();
    let identities = expect_status(owner.get("/api/me/identities").await?, 200).await?;
    let identity_id = identities["identities"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        !identity_id.is_empty(),
        "the owner has no identity: {identities}"
    );
    let sessions = expect_status(owner.get("/api/me/sessions").await?, 200).await?;
    let session_id = sessions["sessions"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        !session_id.is_empty(),
        "the owner has no session: {sessions}"
    );
    let before = snapshot(&owner, &conversation, &sent.run_id).await?;

    let intruder = logged_in_client(&server, &unique_name("intruder")).await?;
    let intruder_key = expect_status(
        call(
            &intruder,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "i"})),
        )
        .await?,
        201,
    )
    .await?;
    let by_key = ApiClient::with_api_key(
        &server.url(),
        intruder_key["key"].as_str().unwrap_or_default(),
    );
    for (who, client) in [("session", &intruder), ("API key", &by_key)] {
        for (method, template, body) in cases() {
            let id = if template.starts_with("/api/conversations") {
                conversation.as_str()
            } else if template.starts_with("/api/runs") {
                sent.run_id.as_str()
            } else if template.starts_with("/api/keys") {
                key_id.as_str()
            } else if template.starts_with("/api/me/identities") {
                identity_id.as_str()
            } else if template.starts_with("/api/me/sessions") {
                session_id.as_str()
            } else {
                bail!("no owner id for {template}")
            };
            let path = template.replace("{id}", id).replace("{*path}", "notes.txt");
            let resp = call(client, method.clone(), &path, body).await?;
            if who == "API key"
                && (template.starts_with("/api/keys")
                    || template.starts_with("/api/me/identities")
                    || template.starts_with("/api/me/sessions"))
            {
                // Keys are managed from a session only: refused before any lookup.
                expect_error(resp, 403, "session_required").await?;
                continue;
            }
            let status = resp.status();
            let got = resp.text().await?;
            ensure!(
                status.as_u16() == 404 && got.contains("not_found"),
                "{who}: {method} {path} answered {status}: {got}"
            );
        }
    }
    // The intruder's own list of sessions holds only its own.
    let listed = expect_status(intruder.get("/api/me/sessions").await?, 200).await?;
    ensure!(
        listed["sessions"].as_array().is_some_and(|s| s.len() == 1
            && s[0]["id"] != session_id.as_str()
            && s[0]["current"] == true),
        "the intruder's sessions: {listed}"
    );
    expect_error(
        by_key.get("/api/me/sessions").await?,
        403,
        "session_required",
    )
    .await?;

    // A parent message of the owner's, under the intruder's own conversation.
    let own = intruder.create_conversation(None).await?;
    let parent = sent.message_id.as_str();
    let resp = call(
        &intruder,
        Method::POST,
        &format!("/api/conversations/{own}/messages"),
        Some(json!({"content": "x", "parent_id": parent})),
    )
    .await?;
    expect_error(resp, 404, "not_found").await?;
    ensure!(
        intruder.messages(&own).await?.is_empty(),
        "nothing was written"
    );

    // Nothing changed for the owner, whose ids all still work.
    let after = snapshot(&owner, &conversation, &sent.run_id).await?;
    ensure!(
        before == after,
        "the owner's data changed:\nbefore {before}\nafter  {after}"
    );
    expect_status(
        ApiClient::with_api_key(&server.url(), &owner_key)
            .get("/api/me")
            .await?,
        200,
    )
    .await?;
    let continued = owner.continue_run(&sent.run_id).await?;
    owner
        .wait_run_ended(&continued, Duration::from_secs(20))
        .await?;
    Ok(())
}
