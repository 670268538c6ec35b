//! Groups of accounts on the Access page, end to end: a change made on one instance
//! is enforced by another sharing its PostgreSQL database within the policy's
//! refresh time (the test waits for it to happen, bounded); a group gives a tool
//! server of the real `@modelcontextprotocol/server-everything` to its members only,
//! set up with the console's forms (no JavaScript): a member's model request offers
//! its tools and the call runs, an account removed from the group gets a request
//! without them and its model's call of one is refused.

use crate::admin_console::{Form, account_id, admin_client, form};
use crate::mcp_tools::{connected, everything_entry, result_for, set_tools};
use crate::quota_support::{call, expect_error, expect_status};
use crate::{finished, mcp_tools::of_kind};
use anyhow::{Context, Result, ensure};
use chorus_tests::fake_tool_models::{FakeToolModel, ToolWire};
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, PASSWORD, Resume, ServerConfig, TestDatabase, TestRedis, TestServer,
    logged_in_client, script, unique_name,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// The model ids `GET /api/models` lists for a client.
async fn models(client: &ApiClient) -> Result<Vec<String>> {
    let list = expect_status(client.get("/api/models").await?, 200).await?;
    Ok(list["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

/// Polls `client`'s model list until it is `expected`. Bounded well past the policy's
/// refresh time (5 s), so only a change that never arrives fails it.
async fn models_become(client: &ApiClient, expected: &[&str], what: &str) -> Result<()> {
    until(what, Duration::from_secs(20), || async {
        Ok((models(client).await? == expected).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_change_on_one_instance_applies_on_the_other() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let shared = ServerConfig::new()
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix())
        .scripted("s", &script(10), 500.0)
        .scripted("t", &script(10), 500.0);
    let a = TestServer::start(shared.clone().instance_id("instance-a")).await?;
    let b = TestServer::start(shared.instance_id("instance-b")).await?;
    let admin = admin_client(&a).await?;
    let name = unique_name("erin");
    a.create_user(&name, PASSWORD).await?;
    let on_b = b.client();
    on_b.login(&name, PASSWORD).await?;
    let both = ["s/demo", "t/demo"];
    // B has read the policy now (it holds it for up to 5 s).
    ensure!(models(&on_b).await? == both);

    // A role override made on A: B drops t/demo from its list once its copy expires.
    expect_status(
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
    models_become(&on_b, &["s/demo"], "B to apply A's role override").await?;
    let conversation = on_b.create_conversation(Some("s/demo")).await?;
    expect_error(
        call(
            &on_b,
            Method::POST,
            "/api/conversations",
            Some(json!({"model": "t/demo"})),
        )
        .await?,
        403,
        "model_not_allowed",
    )
    .await?;

    // A group made on A giving t/demo, with erin in it: B gives it back to erin.
    let group = expect_status(
        call(
            &admin,
            Method::POST,
            "/api/admin/access/groups",
            Some(json!({"name": unique_name("t-users")})),
        )
        .await?,
        201,
    )
    .await?;
    let group = group["id"].as_str().context("group id")?.to_string();
    let set = expect_status(
        call(
            &admin,
            Method::PUT,
            &format!("/api/admin/access/groups/{group}/models"),
            Some(json!({"names": ["t/demo"]})),
        )
        .await?,
        200,
    )
    .await?;
    ensure!(
        set["changed"] == true && set["group"]["models"] == json!(["t/demo"]),
        "{set}"
    );
    let erin = account_id(&admin, &name).await?;
    let added = expect_status(
        call(
            &admin,
            Method::PUT,
            &format!("/api/admin/access/groups/{group}/members/{erin}"),
            None,
        )
        .await?,
        200,
    )
    .await?;
    ensure!(added["changed"] == true, "{added}");
    models_become(&on_b, &both, "B to apply A's new group").await?;
    let sent = on_b
        .send_message(&on_b.create_conversation(Some("t/demo")).await?, "hi")
        .await?;
    let ended = on_b
        .wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;
    ensure!(ended["status"] == "complete", "{ended}");

    // Memberships are read with every check, never held: leaving the group on A
    // applies to erin's very next request on B.
    expect_status(
        call(
            &admin,
            Method::DELETE,
            &format!("/api/admin/access/groups/{group}/members/{erin}"),
            None,
        )
        .await?,
        200,
    )
    .await?;
    ensure!(models(&on_b).await? == ["s/demo"]);
    let refused = expect_error(
        call(
            &on_b,
            Method::POST,
            "/api/conversations",
            Some(json!({"model": "t/demo"})),
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
    let sent = on_b.send_message(&conversation, "still here").await?;
    on_b.wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;

    // A's changes are in the one audit log, read through B.
    let on_b_admin = admin.same_session_on(&b.url());
    let entries = expect_status(
        on_b_admin
            .get(&format!("/api/admin/audit?object={erin}"))
            .await?,
        200,
    )
    .await?;
    let actions: Vec<&str> = entries["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        actions == ["remove_from_group", "add_to_group"],
        "{entries}"
    );
    Ok(())
}

/// The CSRF token in a console page.
async fn csrf_token(client: &ApiClient, path: &str) -> Result<String> {
    let page = client.get(path).await?.text().await?;
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .with_context(|| format!("{path} has no CSRF field"))
}

/// Posts a console form (with the token) as a browser does, following the redirect
/// to the page it acted on; returns that page.
async fn post_form(client: &ApiClient, path: &str, fields: &[(&str, &str)]) -> Result<String> {
    let resp = client
        .request(Method::POST, path)
        .form_body(form(fields))
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "POST {path}: {status} {text}");
    Ok(text)
}

/// The names of the tools `GET /api/tools` lists for a client.
async fn tool_names(client: &ApiClient) -> Result<Vec<String>> {
    let tools = expect_status(client.get("/api/tools").await?, 200).await?;
    Ok(tools["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect())
}

/// The tool names an OpenAI Chat Completions request offered.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_server_a_group_gives_is_offered_and_called_by_its_members_only() -> Result<()> {
    let fake = FakeToolModel::start(ToolWire::OpenAi).await?;
    // Users may use no tool server by the config; the group gives `everything`.
    let toml = format!(
        "[access.roles.user]\ntool_servers = []\n\n\
         [[mcp.servers]]\nid = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        everything_entry()?.display().to_string(),
    );
    let server = TestServer::start(
        ServerConfig::new()
            .openai("oai", &fake.base_url(), "sk-fake", &["gpt-4o-mini"])
            .raw_toml(&toml),
    )
    .await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["everything"]).await?;
    let (alice_name, bob_name) = (unique_name("alice"), unique_name("bob"));
    let alice = logged_in_client(&server, &alice_name).await?;
    let bob = logged_in_client(&server, &bob_name).await?;
    ensure!(
        !tool_names(&alice)
            .await?
            .iter()
            .any(|n| n.starts_with("everything__")),
        "the role gives no tool server"
    );

    // The admin makes the group with the console's forms.
    let token = csrf_token(&admin, "/admin/access").await?;
    let group_name = unique_name("tool-users");
    let page = post_form(
        &admin,
        "/admin/access/groups",
        &[("csrf", token.as_str()), ("name", group_name.as_str())],
    )
    .await?;
    ensure!(page.contains("it gives nothing yet"), "{page}");
    let groups = expect_status(admin.get("/api/admin/access/groups").await?, 200).await?;
    let group = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == group_name.as_str())
        .and_then(|g| g["id"].as_str())
        .with_context(|| format!("no group {group_name}: {groups}"))?
        .to_string();
    let here = format!("/admin/access/groups/{group}");
    post_form(
        &admin,
        &format!("{here}/tool_servers"),
        &[("csrf", token.as_str()), ("names", "everything")],
    )
    .await?;
    // Alice from the group's page (by name), Bob from his account's page.
    let page = post_form(
        &admin,
        &format!("{here}/members"),
        &[
            ("csrf", token.as_str()),
            ("action", "add"),
            ("account", alice_name.as_str()),
        ],
    )
    .await?;
    ensure!(
        page.contains("Added to the group.") && page.contains(&alice_name),
        "{page}"
    );
    let bob_id = account_id(&admin, &bob_name).await?;
    let page = post_form(
        &admin,
        &format!("/admin/accounts/{bob_id}/groups"),
        &[
            ("csrf", token.as_str()),
            ("action", "add"),
            ("group", group.as_str()),
        ],
    )
    .await?;
    ensure!(
        page.contains("Added to the group.") && page.contains(&group_name),
        "{page}"
    );

    // Both select the server for a conversation while they may.
    let mut conversations = Vec::new();
    for client in [&alice, &bob] {
        ensure!(
            tool_names(client)
                .await?
                .contains(&"everything__echo".to_string()),
            "a member is not given the group's server"
        );
        let conversation = client.create_conversation(Some("oai/gpt-4o-mini")).await?;
        set_tools(client, &conversation, json!(["everything"])).await?;
        conversations.push(conversation);
    }

    // Bob leaves the group (the account page's remove button).
    let page = post_form(
        &admin,
        &format!("/admin/accounts/{bob_id}/groups"),
        &[
            ("csrf", token.as_str()),
            ("action", "remove"),
            ("group", group.as_str()),
        ],
    )
    .await?;
    ensure!(page.contains("Removed from the group."), "{page}");
    ensure!(
        !tool_names(&bob)
            .await?
            .iter()
            .any(|n| n.starts_with("everything__")),
        "bob still sees the server's tools"
    );
    let resp = bob
        .request(
            Method::PUT,
            &format!("/api/conversations/{}/tools", conversations[1]),
        )
        .json(&json!({"tools": ["everything"]}))
        .send()
        .await?;
    ensure!(
        resp.status() == 400,
        "bob selected the server again: {}",
        resp.status()
    );

    // Bob's model asks for the tool anyway: not offered, and its call is refused.
    let ask = r#"call everything__echo {"message": "from the group"}"#;
    let before = fake.requests().len();
    let sent = bob.send_message(&conversations[1], ask).await?;
    let events = bob.events_to_finished(&sent.run_id, Resume::Start).await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let requests = fake.requests();
    ensure!(
        requests.len() == before + 2,
        "{} requests",
        requests.len() - before
    );
    ensure!(
        offered(&requests[before].body).is_empty(),
        "bob's request offered {:?}",
        offered(&requests[before].body)
    );
    let refused = result_for(&events, "everything__echo")?;
    ensure!(
        refused.data["is_error"] == true
            && refused.data["output"]
                .as_str()
                .is_some_and(|o| o.contains("not offered")),
        "{}",
        refused.data
    );

    // Alice's request offers the server's tools and the call runs on the server.
    let before = fake.requests().len();
    let sent = alice.send_message(&conversations[0], ask).await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let requests = fake.requests();
    ensure!(
        offered(&requests[before].body).contains(&"everything__echo".to_string()),
        "alice's request offered {:?}",
        offered(&requests[before].body)
    );
    ensure!(of_kind(&events, "tool_call").len() == 1, "{events:?}");
    let echoed = result_for(&events, "everything__echo")?;
    ensure!(
        echoed.data["is_error"] == false && echoed.data["output"] == "Echo: from the group",
        "{}",
        echoed.data
    );

    // The group's page lists Alice alone; the account audit has Bob's two changes.
    let page = admin.get(&here).await?.text().await?;
    ensure!(
        page.contains(&alice_name) && !page.contains(&bob_name),
        "{page}"
    );
    let audit = expect_status(
        admin
            .get(&format!("/api/admin/audit?object={bob_id}"))
            .await?,
        200,
    )
    .await?;
    ensure!(
        audit["entries"][0]["action"] == "remove_from_group"
            && audit["entries"][1]["action"] == "add_to_group"
            && audit["entries"][1]["after"]["groups"] == json!([group_name]),
        "{audit}"
    );
    Ok(())
}
