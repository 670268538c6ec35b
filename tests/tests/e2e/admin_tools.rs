//! The admin console's Tools area over HTTP, with real tools: an MCP server built on
//! the official Python SDK (`tests/mcp/py_server.py`, stdio) restarted from
//! `/api/admin/tools` in the middle of a call (the call ends with a clear tool error,
//! the restart counter goes up, the tool works again), and a real Docker sandbox
//! execution of a long `sleep` listed with its run and account and killed from
//! another instance on the same engine (the run's tool result says an administrator
//! stopped it, and Docker has no container or volume of it left). Both actions are in
//! the audit log; the page lists both areas.

use crate::admin_console::admin_client;
use crate::finished;
use crate::mcp_tools::{connected, result_for, set_tools, stdio_servers};
use crate::quota_support::{call, expect_status};
use crate::sandbox_tool::{containers, server as sandbox_server};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::wait::until;
use chorus_tests::{ApiClient, Resume, ServerConfig, TestServer, logged_in_client, unique_name};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// The `py` server as `GET /api/admin/tools` shows it.
async fn py_server(admin: &ApiClient) -> Result<Value> {
    let tools = expect_status(admin.get("/api/admin/tools").await?, 200).await?;
    tools["mcp_servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "py").cloned())
        .with_context(|| format!("no py server: {tools}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_restarts_an_mcp_server_mid_call_and_its_tools_work_again() -> Result<()> {
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    let server = TestServer::start(
        ServerConfig::new()
            .scripted(
                "slow",
                "@call py__slow {\"seconds\": 60}\nAfter: {{tool_results}}",
                200.0,
            )
            .scripted(
                "add",
                "@call py__add {\"a\": 1, \"b\": 2}\nSum: {{tool_results}}",
                200.0,
            )
            .raw_toml(&toml),
    )
    .await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let before = py_server(&admin).await?;
    ensure!(
        before["state"] == "connected"
            && before["kind"] == "mcp_stdio"
            && before["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "slow")),
        "{before}"
    );
    let restarts = before["restarts"].as_u64().context("restarts")?;

    // A run waiting on the server's slow tool when the admin restarts it.
    let user = logged_in_client(&server, &unique_name("mcpuser")).await?;
    let conversation = user.create_conversation(Some("slow/demo")).await?;
    set_tools(&user, &conversation, json!(["py"])).await?;
    let sent = user.send_message(&conversation, "go").await?;
    let mut stream = user.events(&sent.run_id, Resume::Start).await?;
    loop {
        match stream.next().await? {
            Some(e) if e.kind == "tool_call" => break,
            Some(_) => {}
            None => bail!("the run ended before its tool call"),
        }
    }
    // The tool host sends the call right after the `tool_call` event.
    expect_status(
        call(
            &admin,
            Method::POST,
            "/api/admin/tools/mcp/py/restart",
            None,
        )
        .await?,
        202,
    )
    .await?;
    let rest = stream.to_finished().await?;
    let r = result_for(&rest, "py__slow")?;
    ensure!(
        r.data["is_error"] == true
            && r.data["output"]
                .as_str()
                .is_some_and(|o| o.contains("connection closed") || o.contains("unavailable")),
        "the call in flight did not end with a clear error: {}",
        r.data
    );
    ensure!(finished(&rest)?.status() == Some("complete"), "{rest:?}");

    // Connected again, one restart more, and its tools answer.
    let after = until(
        "the restarted server to connect",
        Duration::from_secs(30),
        || async {
            let py = py_server(&admin).await?;
            Ok(
                (py["state"] == "connected" && py["restarts"].as_u64() > Some(restarts))
                    .then_some(py),
            )
        },
    )
    .await?;
    ensure!(
        after["last_error"] == before["last_error"],
        "an asked-for restart is not an error: {after}"
    );
    let conversation = user.create_conversation(Some("add/demo")).await?;
    set_tools(&user, &conversation, json!(["py__add"])).await?;
    let sent = user.send_message(&conversation, "add").await?;
    let events = user.events_to_finished(&sent.run_id, Resume::Start).await?;
    let add = result_for(&events, "py__add")?;
    ensure!(
        add.data["output"] == "3" && add.data["is_error"] == false,
        "after the restart: {}",
        add.data
    );

    // An unknown server is 404; the restart is audited; the page shows the server.
    let resp = call(
        &admin,
        Method::POST,
        "/api/admin/tools/mcp/nosuch/restart",
        None,
    )
    .await?;
    ensure!(resp.status() == 404, "{}", resp.status());
    let audit = expect_status(
        admin
            .get("/api/admin/audit?action=restart_mcp_server")
            .await?,
        200,
    )
    .await?;
    let entries = audit["entries"].as_array().context("entries")?;
    ensure!(
        entries.len() == 1 && entries[0]["object_id"] == "py",
        "{audit}"
    );
    // This server's sandbox is disabled: it runs nothing, so there is nothing to kill.
    let tools = expect_status(admin.get("/api/admin/tools").await?, 200).await?;
    ensure!(
        tools["sandbox"]["enabled"] == false && tools["sandbox"]["executions"] == json!([]),
        "{tools}"
    );
    let resp = call(
        &admin,
        Method::POST,
        "/api/admin/tools/sandbox/chorus-sbx-0123456789abcdef0123456789abcdef/kill",
        None,
    )
    .await?;
    ensure!(resp.status() == 404, "{}", resp.status());
    let page = admin.get("/admin/tools").await?.text().await?;
    ensure!(
        page.contains("data-server=\"py\"") && page.contains("/admin/tools/mcp/py/restart"),
        "the Tools page does not list the py server"
    );
    drop(server);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_kills_a_sandbox_execution_and_nothing_is_left() -> Result<()> {
    let script = format!(
        "@call code_interpreter {}\nAfter: {{{{tool_results}}}}",
        json!({"language": "python", "code": "import time\nprint('sleeping', flush=True)\ntime.sleep(600)"})
    );
    let instance = unique_name("sbkill");
    let server = sandbox_server(&script, &instance).await?;
    let admin = admin_client(&server).await?;
    let name = unique_name("sleeper");
    let alice = logged_in_client(&server, &name).await?;
    let conversation = alice.create_conversation(Some("s/demo")).await?;
    set_tools(&alice, &conversation, json!(["sandbox"])).await?;
    let sent = alice.send_message(&conversation, "sleep").await?;

    // Listed by Docker's labels (the engine is shared: pick this run's), once the
    // program itself runs.
    let execution = until(
        "the execution to be listed as running",
        Duration::from_secs(60),
        || async {
            let tools = expect_status(admin.get("/api/admin/tools").await?, 200).await?;
            ensure!(
                tools["sandbox"]["enabled"] == true && tools["sandbox"]["reachable"] == true,
                "{tools}"
            );
            Ok(tools["sandbox"]["executions"]
                .as_array()
                .and_then(|list| {
                    list.iter()
                        .find(|e| e["run_id"] == sent.run_id.as_str())
                        .cloned()
                })
                .filter(|e| e["program_running"] == true))
        },
    )
    .await?;
    ensure!(
        execution["account_name"] == name.as_str()
            && execution["instance"] == instance.as_str()
            && execution["containers"] == 2
            && execution["started_at"].as_i64().is_some(),
        "{execution}"
    );
    let id = execution["id"].as_str().context("id")?.to_string();
    let page = admin.get("/admin/tools").await?.text().await?;
    ensure!(
        page.contains(&format!("data-execution=\"{id}\"")) && page.contains(&name),
        "the Tools page does not list the execution"
    );
    ensure!(!containers(&instance)?.is_empty());

    // Another instance on the same engine (its own database) lists it too, from
    // Docker's labels, and kills it.
    let other = sandbox_server("unused", &unique_name("sbother")).await?;
    let other_admin = admin_client(&other).await?;
    let seen = expect_status(other_admin.get("/api/admin/tools").await?, 200).await?;
    ensure!(
        seen["sandbox"]["executions"].as_array().is_some_and(|l| l
            .iter()
            .any(|e| e["id"] == id.as_str() && e["instance"] == instance.as_str())),
        "the other instance does not list the execution: {seen}"
    );
    expect_status(
        call(
            &other_admin,
            Method::POST,
            &format!("/api/admin/tools/sandbox/{id}/kill"),
            None,
        )
        .await?,
        202,
    )
    .await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let result = result_for(&events, "code_interpreter")?;
    let output = result.data["output"].as_str().unwrap_or_default();
    ensure!(
        output.contains("stopped by an administrator") && output.contains("exit code: none"),
        "{result:?}"
    );
    ensure!(
        result.data["details"]["stopped_by_admin"] == true,
        "{result:?}"
    );
    until(
        "the killed execution's containers to be removed",
        Duration::from_secs(30),
        || async { Ok(containers(&instance)?.is_empty().then_some(())) },
    )
    .await
    .context("a container of the killed execution was left")?;
    ensure!(
        !volume_exists_for(&id)?,
        "the workspace volume of {id} was left"
    );

    // Gone from the list; a second kill is 404; the kill is audited.
    let tools = expect_status(admin.get("/api/admin/tools").await?, 200).await?;
    ensure!(
        !tools["sandbox"]["executions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["id"] == id.as_str())),
        "{tools}"
    );
    let resp = call(
        &admin,
        Method::POST,
        &format!("/api/admin/tools/sandbox/{id}/kill"),
        None,
    )
    .await?;
    ensure!(resp.status() == 404, "{}", resp.status());
    let audit = expect_status(
        other_admin
            .get(&format!("/api/admin/audit?object={id}"))
            .await?,
        200,
    )
    .await?;
    let entries = audit["entries"].as_array().context("entries")?;
    ensure!(
        entries.len() == 1
            && entries[0]["action"] == "kill_sandbox_execution"
            && entries[0]["before"]["run_id"] == sent.run_id.as_str(),
        "{audit}"
    );
    drop(other);
    drop(server);
    Ok(())
}

/// Whether Docker still has a sandbox volume labelled with `execution`.
fn volume_exists_for(execution: &str) -> Result<bool> {
    let out = std::process::Command::new("docker")
        .args([
            "-H",
            &crate::sandbox_tool::docker_host(),
            "volume",
            "ls",
            "-q",
            "--filter",
        ])
        .arg(format!("label=chorus.sandbox.execution={execution}"))
        .output()
        .context("running the docker CLI")?;
    ensure!(
        out.status.success(),
        "docker volume ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
}
