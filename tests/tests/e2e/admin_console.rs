//! The admin console over HTTP: every `/admin` page and `/api/admin` route refuses a
//! normal user (403) and a request without a session (401) and changes nothing; every
//! console form is refused without its CSRF token, with a wrong one, and from another
//! origin; an admin suspends an account (its session, API key and gateway calls are
//! refused with a message saying so, its running reply stops), reactivates it,
//! grants credits, stops another account's run, and finds it all in the audit CSV;
//! a model restricted to a role leaves that role's model lists (web and gateway) and
//! is refused when a run names it, while an admin keeps it.
//! The routes are read from the console's source, so a new one is covered at once.

use crate::quota_support::*;
use anyhow::{Context, Result, ensure};
use chorus_tests::{
    ApiClient, PASSWORD, ServerConfig, TestServer, logged_in_client, script, unique_name,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// (METHOD, path) of every route in a router's source file.
fn routes_in(source: &str) -> Vec<(Method, String)> {
    let routes_fn = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    for segment in routes_fn.split(".route(").skip(1) {
        let Some(path) = segment.split('"').nth(1) else {
            continue;
        };
        let handler = segment.split(')').take(3).collect::<Vec<_>>().join(")");
        for (name, method) in [
            ("get(", Method::GET),
            ("post(", Method::POST),
            ("put(", Method::PUT),
            ("delete(", Method::DELETE),
        ] {
            if handler.contains(name) {
                out.push((method, path.to_string()));
            }
        }
    }
    out
}

fn console_routes() -> Vec<(Method, String)> {
    let mut all = routes_in(include_str!("../../../adapters/web-admin/src/api.rs"));
    all.extend(routes_in(include_str!(
        "../../../adapters/web-admin/src/pages/mod.rs"
    )));
    all.push((Method::POST, "/api/admin/grants".into()));
    // The stylesheet is the one public file of the console.
    all.retain(|(_, path)| path != "/admin/admin.css");
    all
}

/// `application/x-www-form-urlencoded`, as a browser posts a form.
pub(crate) fn form<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k.as_ref()), enc(v.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) trait Form {
    fn form_body(self, body: String) -> Self;
}

impl Form for reqwest::RequestBuilder {
    fn form_body(self, body: String) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

pub(crate) async fn admin_client(server: &TestServer) -> Result<ApiClient> {
    let name = unique_name("root");
    server
        .cli(
            &["user", "create", &name, "--admin", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await?;
    let client = server.client();
    client.login(&name, PASSWORD).await?;
    Ok(client)
}

pub(crate) async fn account_id(admin: &ApiClient, name: &str) -> Result<String> {
    let found = expect_status(
        admin.get(&format!("/api/admin/accounts?q={name}")).await?,
        200,
    )
    .await?;
    found["accounts"][0]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no account {name}: {found}"))
}

/// What an attack must not change: the account as the console shows it, and the
/// audit log's admin entries.
async fn snapshot(admin: &ApiClient, id: &str) -> Result<Value> {
    let account =
        expect_status(admin.get(&format!("/api/admin/accounts/{id}")).await?, 200).await?;
    let audit = expect_status(admin.get("/api/admin/audit?kind=admin").await?, 200).await?;
    let access = expect_status(admin.get("/api/admin/access").await?, 200).await?;
    Ok(json!({
        "account": account,
        "audit": audit["entries"].as_array().map(Vec::len),
        "access": access,
    }))
}

/// A body each route accepts when the caller may use it.
fn body_for(path: &str, victim: &str) -> Option<Value> {
    if path.ends_with("/role") {
        Some(json!({"role": "admin"}))
    } else if path.ends_with("/refill") {
        Some(json!({"amount": 100, "interval_secs": 60}))
    } else if path.ends_with("/credits") {
        Some(json!({"amount": 100}))
    } else if path.ends_with("/delete") {
        Some(json!({"confirm": victim}))
    } else if path == "/api/admin/access/groups" {
        Some(json!({"name": "sneaky"}))
    } else if path.starts_with("/api/admin/access/") {
        Some(json!({"mode": "only", "names": []}))
    } else if path == "/api/admin/grants" {
        Some(json!({"account": victim, "amount": 100}))
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_refuses_everyone_but_admins_and_forms_need_their_token() -> Result<()> {
    let server = TestServer::start(ServerConfig::new().scripted("s", &script(40), 200.0)).await?;
    let admin = admin_client(&server).await?;
    let victim_name = unique_name("victim");
    let victim = logged_in_client(&server, &victim_name).await?;
    let conversation = victim.create_conversation(None).await?;
    let sent = victim.send_message(&conversation, "hello").await?;
    victim
        .wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;
    let id = account_id(&admin, &victim_name).await?;
    let before = snapshot(&admin, &id).await?;

    let user_name = unique_name("user");
    let user = logged_in_client(&server, &user_name).await?;
    let user_key =
        ApiClient::with_api_key(&server.url(), &server.create_api_key(&user_name).await?);
    let nobody = server.client();
    let routes = console_routes();
    ensure!(
        routes.len() > 25,
        "too few console routes found: {routes:?}"
    );
    for (who, client, status) in [
        ("a normal user's session", &user, 403),
        ("a normal user's API key", &user_key, 403),
        ("no session", &nobody, 401),
    ] {
        for (method, template) in &routes {
            let path = template
                .replace(
                    "{id}",
                    if template.contains("/runs/") {
                        &sent.run_id
                    } else {
                        &id
                    },
                )
                .replace("{identity}", "x")
                .replace("{server}", "everything")
                .replace("{execution}", "chorus-sbx-0123456789abcdef0123456789abcdef")
                .replace("{role}", "user")
                .replace("{resource}", "models")
                .replace("{group}", "x")
                .replace("{account}", &id);
            let mut req = client.request(method.clone(), &path);
            if template.starts_with("/admin/") && *method == Method::POST {
                req = req.form_body(form(&[
                    ("csrf", "x"),
                    ("amount", "5"),
                    ("role", "admin"),
                    ("confirm", &victim_name),
                    ("mode", "only"),
                    ("names", ""),
                    ("name", "sneaky"),
                    ("account", &victim_name),
                    ("group", "x"),
                ]));
            } else if let Some(body) = body_for(template, &victim_name) {
                req = req.json(&body);
            }
            let resp = req.send().await?;
            let got = resp.status().as_u16();
            let text = resp.text().await?;
            // Pages take the session cookie only: an API key is no session there (401),
            // and a form posted with one carries no page origin (403 cross_origin).
            let expected: &[u16] = if who.contains("API key") && template.starts_with("/admin") {
                &[401, 403]
            } else {
                std::slice::from_ref(&status)
            };
            ensure!(
                expected.contains(&got),
                "{who}: {method} {path} answered {got}, not {status}: {text}"
            );
        }
    }
    ensure!(
        snapshot(&admin, &id).await? == before,
        "a refused request changed something"
    );

    // Forms: no token, a wrong token, the right token from another origin: refused.
    let page = admin
        .get(&format!("/admin/accounts/{id}"))
        .await?
        .text()
        .await?;
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the account page has no CSRF field")?
        .to_string();
    let grant = format!("/admin/accounts/{id}/credits");
    let suspend = format!("/admin/accounts/{id}/suspend");
    let access = "/admin/access/user/models".to_string();
    let restart = "/admin/tools/mcp/everything/restart".to_string();
    let kill = "/admin/tools/sandbox/chorus-sbx-0123456789abcdef0123456789abcdef/kill".to_string();
    let new_group = "/admin/access/groups".to_string();
    for target in [&grant, &suspend, &access, &restart, &kill, &new_group] {
        for (csrf, origin, code) in [
            (None, server.url(), "csrf"),
            (Some("0".repeat(64)), server.url(), "csrf"),
            (
                Some(token.clone()),
                "http://evil.example".to_string(),
                "cross_origin",
            ),
        ] {
            let mut fields = vec![
                ("amount", "5".to_string()),
                ("mode", "only".to_string()),
                ("names", String::new()),
                ("name", "sneaky".to_string()),
            ];
            if let Some(t) = &csrf {
                fields.push(("csrf", t.clone()));
            }
            let resp = admin
                .request_from(&origin, Method::POST, target)
                .form_body(form(&fields))
                .send()
                .await?;
            let got = resp.status().as_u16();
            let text = resp.text().await?;
            ensure!(
                got == 403 && text.contains(code),
                "{target} with {csrf:?} from {origin}: {got} {text}"
            );
        }
    }
    ensure!(
        snapshot(&admin, &id).await? == before,
        "a refused form changed something"
    );
    // The same form with its token goes through (so the refusals above were the token's).
    let resp = admin
        .request(Method::POST, &grant)
        .form_body(form(&[
            ("csrf", token.as_str()),
            ("amount", "5"),
            ("note", "token works"),
        ]))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "{}", resp.status());
    ensure!(
        resp.text().await?.contains("token works"),
        "the grant is not on the page"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_suspends_grants_stops_and_finds_it_in_the_audit_log() -> Result<()> {
    // A long, slow reply: it is still streaming when the admin acts.
    let server = TestServer::start(ServerConfig::new().scripted("s", &script(400), 20.0)).await?;
    let admin = admin_client(&server).await?;
    let name = unique_name("carol");
    let carol = logged_in_client(&server, &name).await?;
    let key = server.create_api_key(&name).await?;
    let by_key = ApiClient::with_api_key(&server.url(), &key);
    let id = account_id(&admin, &name).await?;

    // Grant with a note: balance and ledger change, on the page too.
    let granted = expect_status(
        call(
            &admin,
            Method::POST,
            &format!("/api/admin/accounts/{id}/credits"),
            Some(json!({"amount": 12.5, "note": "conference"})),
        )
        .await?,
        200,
    )
    .await?;
    let detail = expect_status(admin.get(&format!("/api/admin/accounts/{id}")).await?, 200).await?;
    ensure!(detail["balance"] == granted["balance_micros"], "{detail}");
    ensure!(
        detail["ledger"][0]["note"]
            .as_str()
            .is_some_and(|n| n.ends_with("conference")),
        "{detail}"
    );

    // Suspend while a reply streams: it stops; session, key and gateway are refused.
    let conversation = carol.create_conversation(None).await?;
    let sent = carol
        .send_message(&conversation, "talk for a while")
        .await?;
    expect_status(
        call(
            &admin,
            Method::POST,
            &format!("/api/admin/accounts/{id}/suspend"),
            None,
        )
        .await?,
        200,
    )
    .await?;
    let ended = admin_run_ended(&admin, &sent.run_id).await?;
    ensure!(ended["status"] == "stopped", "{ended}");
    let refused = expect_error(carol.get("/api/me").await?, 403, "forbidden").await?;
    ensure!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("suspended"),
        "{refused}"
    );
    expect_error(by_key.get("/api/conversations").await?, 403, "forbidden").await?;
    let gateway = by_key
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "s/demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    ensure!(
        gateway.status() == 403,
        "gateway answered {}",
        gateway.status()
    );
    ensure!(
        gateway.text().await?.contains("suspended"),
        "the gateway does not say why"
    );

    // Reactivate: the same session and key work again.
    expect_status(
        call(
            &admin,
            Method::POST,
            &format!("/api/admin/accounts/{id}/reactivate"),
            None,
        )
        .await?,
        200,
    )
    .await?;
    expect_status(carol.get("/api/me").await?, 200).await?;
    expect_status(by_key.get("/api/conversations").await?, 200).await?;

    // Another account's live run, found in the runs list and stopped from it.
    let sent = carol.send_message(&conversation, "again").await?;
    let live = expect_status(
        admin
            .get(&format!("/api/admin/runs?status=active&account={name}"))
            .await?,
        200,
    )
    .await?;
    ensure!(
        live["runs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["id"] == sent.run_id.as_str())),
        "{live}"
    );
    let page = admin.get("/admin/runs?status=active").await?.text().await?;
    ensure!(
        page.contains(&sent.run_id),
        "the runs page does not list the live run"
    );
    expect_status(
        call(
            &admin,
            Method::POST,
            &format!("/api/admin/runs/{}/stop", sent.run_id),
            None,
        )
        .await?,
        202,
    )
    .await?;
    let ended = carol
        .wait_run_ended(&sent.run_id, Duration::from_secs(10))
        .await?;
    ensure!(ended["status"] == "stopped", "{ended}");

    // The audit log has each action with its before and after, and the CSV too.
    let audit = expect_status(
        admin.get(&format!("/api/admin/audit?object={id}")).await?,
        200,
    )
    .await?;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["grant", "suspend", "reactivate", "suspended_attempt"] {
        ensure!(actions.contains(&action), "no {action} in {actions:?}");
    }
    let csv = admin.get("/api/admin/audit.csv").await?.text().await?;
    for action in [
        ",grant,",
        ",suspend,",
        ",reactivate,",
        ",stop_run,",
        ",suspended_attempt,",
    ] {
        ensure!(csv.contains(action), "no {action} in the CSV:\n{csv}");
    }
    let page_csv = admin
        .get("/admin/audit.csv?kind=admin")
        .await?
        .text()
        .await?;
    ensure!(
        page_csv.contains(",stop_run,") && !page_csv.contains(",suspended_attempt,"),
        "{page_csv}"
    );
    // The account is found by name on the accounts page.
    let accounts = admin
        .get(&format!("/admin/accounts?q={name}"))
        .await?
        .text()
        .await?;
    ensure!(
        accounts.contains(&name),
        "the accounts page does not find {name}"
    );
    Ok(())
}

/// The model ids `/api/models` (web) or `/v1/models` (gateway) lists for a client.
async fn model_ids(client: &ApiClient, path: &str) -> Result<Vec<String>> {
    let list = expect_status(client.get(path).await?, 200).await?;
    let items = if path == "/api/models" {
        &list["models"]
    } else {
        &list["data"]
    };
    Ok(items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_restricted_to_a_role_leaves_its_lists_and_is_refused() -> Result<()> {
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &script(10), 500.0)
            .scripted("t", &script(10), 500.0),
    )
    .await?;
    let admin = admin_client(&server).await?;
    let name = unique_name("dora");
    let dora = logged_in_client(&server, &name).await?;
    let by_key = ApiClient::with_api_key(&server.url(), &server.create_api_key(&name).await?);
    let before = dora.create_conversation(Some("t/demo")).await?;
    let both = ["s/demo", "t/demo"];
    ensure!(model_ids(&dora, "/api/models").await? == both);
    ensure!(model_ids(&by_key, "/v1/models").await? == both);

    // The admin lets users use s/demo only (the JSON API; audited).
    let set = expect_status(
        call(
            &admin,
            Method::PUT,
            "/api/admin/access/user/models",
            Some(json!({"mode": "only", "names": ["s/demo"]})),
        )
        .await?,
        200,
    )
    .await?;
    ensure!(set["changed"] == true, "{set}");
    ensure!(
        set["access"]["roles"][0]["models_source"] == "override",
        "{set}"
    );
    expect_error(
        call(
            &admin,
            Method::PUT,
            "/api/admin/access/user/models",
            Some(json!({"mode": "only", "names": ["nope/model"]})),
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;

    // Gone from the user's lists, web and gateway; refused by name when asked for.
    ensure!(model_ids(&dora, "/api/models").await? == ["s/demo"]);
    let web = expect_status(dora.get("/api/models").await?, 200).await?;
    ensure!(web["default_model"] == "s/demo", "{web}");
    ensure!(model_ids(&by_key, "/v1/models").await? == ["s/demo"]);
    expect_status(by_key.get("/v1/models/t/demo").await?, 404).await?;
    let completion = by_key
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "t/demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    ensure!(completion.status() == 403, "{}", completion.status());
    let body: Value = completion.json().await?;
    ensure!(
        body["error"]["param"] == "model"
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("`t/demo` is not available")),
        "{body}"
    );
    let messages = by_key
        .request(Method::POST, "/v1/messages")
        .json(&json!({"model": "t/demo", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    ensure!(messages.status() == 403, "{}", messages.status());
    let body: Value = messages.json().await?;
    ensure!(body["error"]["type"] == "permission_error", "{body}");
    // A web run of the conversation made before, and a new one on that model.
    let refused = expect_error(
        call(
            &dora,
            Method::POST,
            &format!("/api/conversations/{before}/messages"),
            Some(json!({"content": "hello"})),
        )
        .await?,
        403,
        "model_not_allowed",
    )
    .await?;
    ensure!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("t/demo")),
        "{refused}"
    );
    expect_error(
        call(
            &dora,
            Method::POST,
            "/api/conversations",
            Some(json!({"model": "t/demo"})),
        )
        .await?,
        403,
        "model_not_allowed",
    )
    .await?;
    let allowed = dora.create_conversation(None).await?;
    let sent = dora.send_message(&allowed, "hello").await?;
    dora.wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;

    // The admin keeps every model, and runs the restricted one.
    ensure!(model_ids(&admin, "/api/models").await? == both);
    let mine = admin.create_conversation(Some("t/demo")).await?;
    let sent = admin.send_message(&mine, "hello").await?;
    let ended = admin
        .wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;
    ensure!(ended["status"] == "complete", "{ended}");

    // The page shows the override; its form (with the token) goes back to the config.
    let page = admin.get("/admin/access").await?.text().await?;
    ensure!(
        page.contains("set here"),
        "the page does not show the override"
    );
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the access page has no CSRF field")?
        .to_string();
    let resp = admin
        .request(Method::POST, "/admin/access/user/models")
        .form_body(form(&[
            ("csrf", token.as_str()),
            ("mode", "config"),
            ("names", ""),
        ]))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "{}", resp.status());
    ensure!(model_ids(&dora, "/api/models").await? == both);
    let audit = expect_status(admin.get("/api/admin/audit?action=set_access").await?, 200).await?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    ensure!(
        entries.len() == 2 && entries.iter().all(|e| e["object_id"] == "user:models"),
        "{audit}"
    );
    ensure!(entries[1]["after"]["allow"] == json!(["s/demo"]), "{audit}");
    Ok(())
}

/// Waits for a run to end, read through the console (its owner may be suspended).
async fn admin_run_ended(admin: &ApiClient, run: &str) -> Result<Value> {
    chorus_tests::wait::until("the run to end", Duration::from_secs(10), || async {
        let view = expect_status(admin.get(&format!("/api/admin/runs/{run}")).await?, 200).await?;
        Ok((!matches!(view["status"].as_str(), Some("queued" | "streaming"))).then_some(view))
    })
    .await
}
