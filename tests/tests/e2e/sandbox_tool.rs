//! The `code_interpreter` tool end to end: the real `chorus` binary with the sandbox on
//! the real Docker engine (`CHORUS_TEST_DOCKER_HOST`, else `DOCKER_HOST`; image
//! `chorus-sandbox:1` from scripts/sandbox-image), the scripted model calling the tool.
//! Requires Docker and the `docker` CLI (scripts/provision/50-docker.sh); a missing
//! one fails the test and says which.

use crate::finished;
use crate::mcp_tools::{of_kind, result_for, set_tools};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, Resume, ServerConfig, SseEvent, TestServer, logged_in_client, unique_name,
};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// The Docker engine the sandbox tests use.
pub(crate) fn docker_host() -> String {
    std::env::var("CHORUS_TEST_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// The label on each sandbox container naming the instance that started it
/// (`LABEL_INSTANCE` in core/src/sandbox/container.rs).
const LABEL_INSTANCE: &str = "chorus.sandbox.instance";

/// A server whose sandbox uses the test Docker engine, with its own instance id (so
/// its containers are told apart by label) and the scripted model `s/demo`.
pub(crate) async fn server(script: &str, instance: &str) -> Result<TestServer> {
    TestServer::start(
        ServerConfig::new()
            .scripted("s", script, 200.0)
            .instance_id(instance)
            .raw_toml(&format!(
                "[sandbox]\nenabled = true\ndocker_host = \"{}\"\n",
                docker_host()
            )),
    )
    .await
}

/// Ids of the containers (running or not) of this server's sandbox.
pub(crate) fn containers(instance: &str) -> Result<Vec<String>> {
    let out = Command::new("docker")
        .args(["-H", &docker_host(), "ps", "-aq", "--filter"])
        .arg(format!("label={LABEL_INSTANCE}={instance}"))
        .output()
        .context("running the docker CLI (scripts/provision/50-docker.sh installs it)")?;
    ensure!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// The names of the tools `GET /api/tools` offers the caller.
pub(crate) async fn tool_names(client: &chorus_tests::ApiClient) -> Result<Vec<String>> {
    let v: Value = client.get("/api/tools").await?.json().await?;
    Ok(v["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect())
}

/// A run of the scripted model that ran Python `code` with `code_interpreter` and
/// completed, on a server of its own ([`server`]).
pub(crate) struct Computed {
    pub server: TestServer,
    /// The instance id labelling the server's containers.
    pub instance: String,
    /// The account that ran it.
    pub alice: ApiClient,
    pub conversation: String,
    pub events: Vec<SseEvent>,
}

/// Starts a server whose scripted model calls `code_interpreter` with Python `code`
/// and then says `The sandbox said: ` and the result; alice sends it a message in a
/// conversation with the tool selected, and the run must complete.
pub(crate) async fn compute(code: &str) -> Result<Computed> {
    let script = format!(
        "@call code_interpreter {}\nThe sandbox said: {{{{tool_results}}}}",
        json!({"language": "python", "code": code})
    );
    let instance = unique_name("sbtool");
    let server = server(&script, &instance).await?;
    let alice = logged_in_client(&server, &unique_name("alice")).await?;
    let names = tool_names(&alice).await?;
    ensure!(
        names.iter().any(|n| n == "code_interpreter"),
        "code_interpreter is not offered with Docker at {}: {names:?}",
        docker_host()
    );

    let conversation = alice.create_conversation(Some("s/demo")).await?;
    set_tools(&alice, &conversation, json!(["code_interpreter"])).await?;
    let sent = alice.send_message(&conversation, "compute").await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    Ok(Computed {
        server,
        instance,
        alice,
        conversation,
        events,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_run_computes_with_code_interpreter_and_keeps_its_file() -> Result<()> {
    let code = "print(6 * 7)\nopen('answer.txt', 'w').write('forty-two')";
    let Computed {
        server,
        instance,
        alice,
        conversation,
        events,
    } = compute(code).await?;
    let calls = of_kind(&events, "tool_call");
    ensure!(
        calls.len() == 1 && calls[0].data["name"] == "code_interpreter",
        "{calls:?}"
    );
    ensure!(calls[0].data["arguments"]["code"] == code, "{calls:?}");
    let result = result_for(&events, "code_interpreter")?;
    let output = result.data["output"].as_str().unwrap_or_default();
    ensure!(result.data["is_error"] == false, "{result:?}");
    ensure!(
        output.contains("stdout:\n42\n") && output.contains("exit code: 0"),
        "{output}"
    );
    let details = &result.data["details"];
    ensure!(details["exit_code"] == 0, "{details}");
    ensure!(
        details["files"] == json!([{"path": "answer.txt", "size": 9}]),
        "the tool_result lists the file it wrote: {details}"
    );
    let text = delta_text(&events);
    ensure!(
        text.starts_with("The sandbox said: ") && text.contains("42"),
        "{text}"
    );

    // The file is the conversation's, listed and downloadable by its owner.
    let list: Value = alice
        .get(&format!("/api/conversations/{conversation}/files"))
        .await?
        .json()
        .await?;
    ensure!(
        list["files"] == json!([{"path": "answer.txt", "size": 9}]),
        "{list}"
    );
    let resp = alice
        .get(&format!(
            "/api/conversations/{conversation}/files/answer.txt"
        ))
        .await?;
    ensure!(resp.status() == 200, "download: {}", resp.status());
    ensure!(resp.text().await? == "forty-two");
    ensure!(containers(&instance)?.is_empty(), "a container was left");

    // Selected by source id or name like an MCP server; left out, it is not offered
    // (the scripted model calls tools only when some are offered) and nothing runs.
    let other = alice.create_conversation(Some("s/demo")).await?;
    set_tools(&alice, &other, json!(["everything__echo"]))
        .await
        .err()
        .context("an unknown tool was accepted in a selection")?;
    set_tools(&alice, &other, json!(["sandbox"])).await?;
    set_tools(&alice, &other, json!([])).await?;
    let sent = alice.send_message(&other, "compute").await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(
        of_kind(&events, "tool_call").is_empty() && of_kind(&events, "tool_result").is_empty(),
        "a conversation without the tool selected still ran it: {events:?}"
    );
    let list: Value = alice
        .get(&format!("/api/conversations/{other}/files"))
        .await?
        .json()
        .await?;
    ensure!(list["files"] == json!([]), "{list}");
    drop(server);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_an_execution_removes_its_container() -> Result<()> {
    let script = format!(
        "@call code_interpreter {}\nslept",
        json!({"language": "python", "code": "import time\nprint('going to sleep', flush=True)\ntime.sleep(60)"})
    );
    let instance = unique_name("sbstop");
    let server = server(&script, &instance).await?;
    let alice = logged_in_client(&server, &unique_name("alice")).await?;
    let conversation = alice.create_conversation(Some("s/demo")).await?;
    set_tools(&alice, &conversation, json!(["sandbox"])).await?;
    let sent = alice.send_message(&conversation, "sleep").await?;
    let running = until(
        "the execution's container to run",
        Duration::from_secs(30),
        || async { Ok(Some(containers(&instance)?).filter(|c| !c.is_empty())) },
    )
    .await?;
    alice.stop(&sent.run_id).await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    ensure!(finished(&events)?.status() == Some("stopped"), "{events:?}");
    let result = result_for(&events, "code_interpreter")?;
    ensure!(
        result.data["is_error"] == true
            && result.data["output"]
                .as_str()
                .is_some_and(|o| o.contains("stopped")),
        "{result:?}"
    );
    until(
        "the stopped execution's container to be removed",
        Duration::from_secs(20),
        || async { Ok(containers(&instance)?.is_empty().then_some(())) },
    )
    .await
    .with_context(|| format!("container {running:?} outlived the stop"))?;
    drop(server);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn code_interpreter_is_not_offered_when_docker_is_unreachable() -> Result<()> {
    let server = TestServer::start(ServerConfig::new().scripted("s", "hi", 200.0).raw_toml(
        "[sandbox]\nenabled = true\ndocker_host = \"unix:///nonexistent/chorus-docker.sock\"\n",
    ))
    .await?;
    let alice = logged_in_client(&server, &unique_name("alice")).await?;
    let names = tool_names(&alice).await?;
    ensure!(
        !names.iter().any(|n| n == "code_interpreter"),
        "offered without Docker: {names:?}"
    );
    let conversation = alice.create_conversation(Some("s/demo")).await?;
    let resp = alice
        .request(
            reqwest::Method::PUT,
            &format!("/api/conversations/{conversation}/tools"),
        )
        .json(&json!({"tools": ["code_interpreter"]}))
        .send()
        .await?;
    ensure!(
        resp.status() == 400,
        "selecting the unoffered tool: {}",
        resp.status()
    );
    drop(server);
    Ok(())
}
