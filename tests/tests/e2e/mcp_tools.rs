//! MCP tools end to end: the real `chorus` binary connected to MCP servers nobody
//! here wrote — `@modelcontextprotocol/server-everything` (npm, stdio) and a server
//! built on the official Python SDK (`tests/mcp/py_server.py`, stdio and streamable
//! HTTP on 127.0.0.1) — with the scripted model calling their tools.
//!
//! Requires `npm ci` in tests/mcp and the Python `mcp` package in the test venv
//! (scripts/provision/30-mcp.sh); a missing one fails the test and says which.

use crate::{assert_consecutive, finished};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::server::free_port;
use chorus_tests::wait::until;
use chorus_tests::{ApiClient, PASSWORD, Resume, ServerConfig, SseEvent, TestServer};
use chorus_tests::{logged_in_client, unique_name};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn mcp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

pub(crate) fn everything_entry() -> Result<PathBuf> {
    let entry =
        mcp_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    ensure!(
        entry.exists(),
        "@modelcontextprotocol/server-everything is not installed: run `npm ci` in {} \
         (scripts/provision/30-mcp.sh does it)",
        mcp_dir().display()
    );
    Ok(entry)
}

pub(crate) fn python() -> Result<String> {
    let py = std::env::var("CHORUS_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/chorus-test-services/venv/bin/python".into());
    let ok = Command::new(&py)
        .args(["-c", "import mcp.server.mcpserver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        ok,
        "the Python `mcp` package is not installed for {py} (scripts/provision/30-mcp.sh installs it)"
    );
    Ok(py)
}

/// The Python server over streamable HTTP on 127.0.0.1; killed when dropped.
struct HttpPyServer {
    child: Child,
    port: u16,
}

impl HttpPyServer {
    async fn start() -> Result<Self> {
        let port = free_port()?;
        let child = Command::new(python()?)
            .arg(mcp_dir().join("py_server.py"))
            .args(["http", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the Python MCP server")?;
        let server = Self { child, port };
        until(
            "the Python MCP server to listen",
            Duration::from_secs(20),
            || async {
                Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ()))
            },
        )
        .await?;
        Ok(server)
    }
}

impl Drop for HttpPyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn stdio_servers(toml: &mut String) -> Result<()> {
    toml.push_str(&format!(
        "[[mcp.servers]]\nid = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n\n\
         [[mcp.servers]]\nid = \"py\"\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n\n",
        everything_entry()?.display().to_string(),
        python()?,
        mcp_dir().join("py_server.py").display().to_string(),
    ));
    Ok(())
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

async fn get_json(client: &ApiClient, path: &str) -> Result<(u16, Value)> {
    let resp = client.get(path).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Waits until every server is connected; returns their status.
pub(crate) async fn connected(admin: &ApiClient, ids: &[&str]) -> Result<Vec<Value>> {
    until(
        "the MCP servers to connect",
        Duration::from_secs(40),
        || async {
            let (_, v) = get_json(admin, "/api/mcp/servers").await?;
            let servers = v["servers"].as_array().cloned().unwrap_or_default();
            let all = ids.iter().all(|id| {
                servers.iter().any(|s| {
                    s["id"] == *id && s["connected"] == true && s["tool_count"].as_u64() > Some(0)
                })
            });
            Ok(all.then_some(servers))
        },
    )
    .await
}

pub(crate) async fn set_tools(client: &ApiClient, conversation: &str, tools: Value) -> Result<()> {
    let resp = client
        .request(
            reqwest::Method::PUT,
            &format!("/api/conversations/{conversation}/tools"),
        )
        .json(&json!({ "tools": tools }))
        .send()
        .await?;
    ensure!(
        resp.status() == 200,
        "PUT tools: {} {}",
        resp.status(),
        resp.text().await?
    );
    Ok(())
}

/// Starts a conversation on `model` with `tools`, sends a message, reads to finished.
async fn run_with_tools(
    client: &ApiClient,
    model: &str,
    tools: Value,
) -> Result<(String, Vec<SseEvent>)> {
    let conversation = client.create_conversation(Some(model)).await?;
    set_tools(client, &conversation, tools).await?;
    let sent = client.send_message(&conversation, "use the tools").await?;
    let events = client
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;
    Ok((sent.run_id, events))
}

/// Waits until the run's row in the server's SQLite database holds its tool steps.
async fn step_saved(server: &TestServer, run: &str) -> Result<()> {
    let url = format!("sqlite://{}/chorus.db?mode=ro", server.data_dir().display());
    let db = sqlx::SqlitePool::connect(&url).await?;
    let saved = until(
        "the run's tool step to be saved",
        Duration::from_secs(10),
        || async {
            let saved: i64 =
                sqlx::query_scalar("SELECT tool_steps IS NOT NULL FROM runs WHERE id = $1")
                    .bind(run)
                    .fetch_one(&db)
                    .await?;
            Ok((saved == 1).then_some(()))
        },
    )
    .await;
    db.close().await;
    saved
}

pub(crate) fn of_kind<'a>(events: &'a [SseEvent], kind: &str) -> Vec<&'a SseEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

pub(crate) fn result_for<'a>(events: &'a [SseEvent], name: &str) -> Result<&'a SseEvent> {
    events
        .iter()
        .find(|e| e.kind == "tool_result" && e.data["name"] == name)
        .with_context(|| format!("no tool_result for {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_mcp_servers_answer_a_scripted_run() -> Result<()> {
    let http = HttpPyServer::start().await?;
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    toml.push_str(&format!(
        "[[mcp.servers]]\nid = \"pyhttp\"\nurl = \"http://127.0.0.1:{}/mcp\"\n\n\
         [[mcp.servers]]\nid = \"adminonly\"\nurl = \"http://127.0.0.1:{}/mcp\"\nallow_roles = [\"admin\"]\n",
        http.port, http.port
    ));
    let script = "@call everything__echo {\"message\": \"hello MCP\"}\n\
                  @call everything__get-sum {\"a\": 2, \"b\": 3}\n\
                  @call pyhttp__add {\"a\": 20, \"b\": 22}\n\
                  @call everything__trigger-long-running-operation {\"duration\": 2, \"steps\": 4}\n\
                  Results: {{tool_results}}";
    let config = ServerConfig::new()
        .scripted("s", script, 200.0)
        .raw_toml(&toml);
    let server = TestServer::start(config).await?;
    let admin = admin_client(&server).await?;
    let status = connected(&admin, &["everything", "py", "pyhttp", "adminonly"]).await?;
    // Internal sources (the code sandbox) report Docker's state, not the MCP servers'.
    ensure!(
        status
            .iter()
            .filter(|s| s["kind"] != "internal")
            .all(|s| s["last_error"].is_null()),
        "{status:?}"
    );

    let user = logged_in_client(&server, &unique_name("mcp")).await?;
    let (code, _) = get_json(&user, "/api/mcp/servers").await?;
    ensure!(code == 403, "a user got {code} for the admin server status");
    let (_, tools) = get_json(&user, "/api/tools").await?;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for expected in [
        "everything__echo",
        "everything__get-sum",
        "everything__trigger-long-running-operation",
        // Registered by the server only after initialization, then announced with
        // notifications/tools/list_changed.
        "everything__simulate-research-query",
        "py__add",
        "pyhttp__add",
    ] {
        ensure!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    ensure!(
        !names.iter().any(|n| n.starts_with("adminonly__")),
        "a user sees admin-only tools"
    );
    ensure!(
        server.log().contains("MCP tool list changed"),
        "list_changed was not handled"
    );
    let echo = &tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "everything__echo")
        .unwrap()["input_schema"];
    ensure!(
        echo["properties"]["message"]["type"] == "string",
        "echo schema: {echo}"
    );

    // A user cannot select a server it may not use.
    let conv = user.create_conversation(Some("s/demo")).await?;
    let resp = user
        .request(
            reqwest::Method::PUT,
            &format!("/api/conversations/{conv}/tools"),
        )
        .json(&json!({"tools": ["adminonly"]}))
        .send()
        .await?;
    ensure!(
        resp.status() == 400,
        "selecting adminonly: {}",
        resp.status()
    );

    let started = Instant::now();
    let (run_id, events) =
        run_with_tools(&user, "s/demo", json!(["everything", "pyhttp__add"])).await?;
    assert_consecutive(&events, 1)?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let calls = of_kind(&events, "tool_call");
    let results = of_kind(&events, "tool_result");
    ensure!(
        calls.len() == 4 && results.len() == 4,
        "calls {calls:?} results {results:?}"
    );
    // Every result comes after its call, and the answer after every result.
    let first_delta = events
        .iter()
        .position(|e| e.kind == "delta")
        .context("no text")?;
    for r in &results {
        let call = calls
            .iter()
            .find(|c| c.data["id"] == r.data["call_id"])
            .context("unpaired result")?;
        ensure!(
            call.seq < r.seq && r.seq < events[first_delta].seq,
            "order: {events:?}"
        );
        ensure!(r.data["is_error"] == false, "{}", r.data);
    }
    ensure!(result_for(&events, "everything__echo")?.data["output"] == "Echo: hello MCP");
    let sum = result_for(&events, "everything__get-sum")?.data["output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(sum.contains('5'), "get-sum said {sum:?}");
    ensure!(result_for(&events, "pyhttp__add")?.data["output"] == "42");
    let long = result_for(&events, "everything__trigger-long-running-operation")?;
    ensure!(
        long.data["output"]
            .as_str()
            .unwrap_or("")
            .contains("completed"),
        "{}",
        long.data
    );
    // The calls ran concurrently: the 2 s operation bounds the run, not a sum.
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let text = delta_text(&events);
    ensure!(
        text.starts_with("Results: ") && text.contains("Echo: hello MCP") && text.contains("42"),
        "{text:?}"
    );
    let run = user.wait_run_ended(&run_id, Duration::from_secs(5)).await?;
    ensure!(
        run["status"] == "complete" && run["text"] == text.as_str(),
        "{run}"
    );
    Ok(())
}

/// A call past its timeout is cancelled and reported to the model; the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_timeout_becomes_a_tool_error() -> Result<()> {
    let mut toml = String::from("[tools]\ncall_timeout_secs = 3\n\n");
    stdio_servers(&mut toml)?;
    let config = ServerConfig::new()
        .scripted(
            "slow",
            "@call py__slow {\"seconds\": 30}\nAfter: {{tool_results}}",
            200.0,
        )
        .raw_toml(&toml);
    let server = TestServer::start(config).await?;
    connected(&admin_client(&server).await?, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("timeout")).await?;
    let started = Instant::now();
    let (_, events) = run_with_tools(&user, "slow/demo", json!(["py"])).await?;
    let r = result_for(&events, "py__slow")?;
    ensure!(r.data["is_error"] == true, "{}", r.data);
    ensure!(
        r.data["output"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer within 3 s"),
        "{}",
        r.data
    );
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "a tool error failed the run"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_become_tool_errors_and_the_server_comes_back() -> Result<()> {
    let mut toml = String::from("[tools]\ncall_timeout_secs = 120\nmax_output_bytes = 200000\n\n");
    stdio_servers(&mut toml)?;
    let config = ServerConfig::new()
        .scripted("big", "@call py__big {\"megabytes\": 10}\nDone.", 200.0)
        .scripted("die", "@call py__die {}\nAfter: {{tool_results}}", 200.0)
        .scripted(
            "bad",
            "@call py__malformed {}\n@call py__add {\"a\": 1, \"b\": 1}\nAfter: {{tool_results}}",
            200.0,
        )
        .scripted(
            "add",
            "@call py__add {\"a\": 1, \"b\": 2}\nSum: {{tool_results}}",
            200.0,
        )
        .raw_toml(&toml);
    let server = TestServer::start(config).await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("faults")).await?;

    // 10 MB of output is cut to the limit with a note.
    let (_, events) = run_with_tools(&user, "big/demo", json!(["py"])).await?;
    let r = result_for(&events, "py__big")?;
    let out = r.data["output"].as_str().unwrap_or("");
    ensure!(
        r.data["truncated"] == true && r.data["is_error"] == false,
        "truncated {} is_error {} output {:?}",
        r.data["truncated"],
        r.data["is_error"],
        out.chars().take(300).collect::<String>()
    );
    ensure!(
        out.len() < 200_200 && out.ends_with("only the first 200000 are shown]"),
        "len {}",
        out.len()
    );
    ensure!(
        out.contains("the tool returned 10485760 bytes"),
        "note: {}",
        &out[out.len() - 120..]
    );

    // A malformed JSON-RPC line from the server does not break the connection.
    let (_, events) = run_with_tools(&user, "bad/demo", json!(["py"])).await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let add = result_for(&events, "py__add")?;
    ensure!(
        add.data["output"] == "2" && add.data["is_error"] == false,
        "{}",
        add.data
    );
    let bad = result_for(&events, "py__malformed")?;
    ensure!(
        bad.data["output"] == "answered after a malformed line",
        "{}",
        bad.data
    );

    // The server process killed mid-call: a clear tool error, then a restart.
    let (_, events) = run_with_tools(&user, "die/demo", json!(["py"])).await?;
    let r = result_for(&events, "py__die")?;
    ensure!(r.data["is_error"] == true, "{}", r.data);
    ensure!(
        r.data["output"]
            .as_str()
            .unwrap_or("")
            .contains("connection closed"),
        "{}",
        r.data
    );
    ensure!(finished(&events)?.status() == Some("complete"));
    until(
        "the killed server to be restarted",
        Duration::from_secs(30),
        || async {
            let (_, v) = get_json(&admin, "/api/mcp/servers").await?;
            let py = v["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["id"] == "py").cloned());
            Ok(py.filter(|p| {
                p["connected"] == true
                    && p["restarts"].as_u64() >= Some(1)
                    && !p["last_error"].is_null()
            }))
        },
    )
    .await?;
    let (_, events) = run_with_tools(&user, "add/demo", json!(["py__add"])).await?;
    ensure!(
        result_for(&events, "py__add")?.data["output"] == "3",
        "after restart: {events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_during_a_tool_call_cancels_it_and_continue_goes_on() -> Result<()> {
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    let config = ServerConfig::new()
        .scripted(
            "slow",
            "@call py__slow {\"seconds\": 20}\nAfter: {{tool_results}}",
            200.0,
        )
        .raw_toml(&toml);
    let server = TestServer::start(config).await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("stop")).await?;
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
    let stopped_at = Instant::now();
    user.stop(&sent.run_id).await?;
    let rest = stream.to_finished().await?;
    ensure!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopped_at.elapsed()
    );
    let r = result_for(&rest, "py__slow")?;
    ensure!(
        r.data["is_error"] == true
            && r.data["output"]
                .as_str()
                .unwrap_or("")
                .contains("cancelled"),
        "{}",
        r.data
    );
    ensure!(finished(&rest)?.status() == Some("stopped"), "{rest:?}");

    // A reader that reconnects afterwards sees the call and the result in order.
    let all = user.events_to_finished(&sent.run_id, Resume::Start).await?;
    assert_consecutive(&all, 1)?;
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    ensure!(
        kinds == ["started", "tool_call", "tool_result", "finished"],
        "{kinds:?}"
    );

    // Continue: the model gets its call and the cancellation as history and answers.
    let next = user.continue_run(&sent.run_id).await?;
    let events = user.events_to_finished(&next, Resume::Start).await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let text = delta_text(&events);
    ensure!(text.starts_with("After: cancelled"), "{text:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_during_a_tool_call_is_continued_with_that_call() -> Result<()> {
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    let config = ServerConfig::new()
        .scripted(
            "slow",
            "@call py__slow {\"seconds\": 3}\nAfter: {{tool_results}}",
            200.0,
        )
        .raw_toml(&toml);
    let mut server = TestServer::start(config).await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("kill")).await?;
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
    drop(stream);
    // The step is saved to the run's row when the round starts, just after the call's
    // event: die once it is there.
    step_saved(&server, &sent.run_id).await?;
    server.kill_9()?;
    server.restart().await?;
    let run = user
        .wait_run_ended(&sent.run_id, Duration::from_secs(20))
        .await?;
    ensure!(run["status"] == "interrupted", "{run}");
    connected(&admin, &["py"]).await?;

    // The continuation runs the call the dead run left pending, then the model answers.
    let next = user.continue_run(&sent.run_id).await?;
    let events = user.events_to_finished(&next, Resume::Start).await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let r = result_for(&events, "py__slow")?;
    ensure!(
        r.data["output"] == "slept 3.0 s" && r.data["call_id"] == "call_1",
        "{}",
        r.data
    );
    ensure!(
        delta_text(&events) == "After: slept 3.0 s",
        "{:?}",
        delta_text(&events)
    );
    let messages = user.messages(&conversation).await?;
    ensure!(
        messages
            .iter()
            .any(|m| m["role"] == "assistant" && m["content"] == "After: slept 3.0 s"),
        "{messages:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_and_prompts_of_server_everything() -> Result<()> {
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    let server = TestServer::start(ServerConfig::new().raw_toml(&toml)).await?;
    connected(&admin_client(&server).await?, &["everything"]).await?;
    let user = logged_in_client(&server, &unique_name("res")).await?;

    let (code, v) = get_json(&user, "/api/mcp/resources").await?;
    ensure!(code == 200, "{code} {v}");
    let resources = v["resources"].as_array().context("resources")?;
    let doc = resources
        .iter()
        .find(|r| {
            r["server"] == "everything"
                && r["uri"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("demo://resource/static/document/"))
        })
        .with_context(|| format!("no static document among {} resources", resources.len()))?;
    let resp = user
        .request(reqwest::Method::POST, "/api/mcp/resources/read")
        .json(&json!({"server": "everything", "uri": doc["uri"]}))
        .send()
        .await?;
    ensure!(resp.status() == 200, "read: {}", resp.status());
    let read: Value = resp.json().await?;
    ensure!(
        read["text"].as_str().is_some_and(|t| t.len() > 20),
        "resource text: {read}"
    );

    let (_, v) = get_json(&user, "/api/mcp/prompts").await?;
    let prompts = v["prompts"].as_array().context("prompts")?;
    let args = prompts
        .iter()
        .find(|p| p["name"] == "args-prompt")
        .context("no args-prompt")?;
    ensure!(
        args["arguments"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["name"] == "city" && x["required"] == true)),
        "{args}"
    );
    let resp = user
        .request(reqwest::Method::POST, "/api/mcp/prompts/get")
        .json(
            &json!({"server": "everything", "name": "args-prompt", "arguments": {"city": "Lyon"}}),
        )
        .send()
        .await?;
    ensure!(resp.status() == 200, "get prompt: {}", resp.status());
    let got: Value = resp.json().await?;
    ensure!(
        got["messages"][0]["role"] == "user"
            && got["messages"][0]["text"] == "What's weather in Lyon?",
        "{got}"
    );
    // An unknown server is not found, whatever it is called.
    let resp = user
        .request(reqwest::Method::POST, "/api/mcp/prompts/get")
        .json(&json!({"server": "nope", "name": "x"}))
        .send()
        .await?;
    ensure!(resp.status() == 404, "unknown server: {}", resp.status());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_server_sees_only_its_own_environment() -> Result<()> {
    let toml = format!(
        "[[mcp.servers]]\nid = \"py\"\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n\
         env = {{ MCP_GIVEN = \"configured\" }}\ninherit_env = [\"MCP_PASSED\"]\n",
        python()?,
        mcp_dir().join("py_server.py").display().to_string(),
    );
    let config = ServerConfig::new()
        .scripted(
            "env",
            "@call py__env {\"name\": \"OPENAI_API_KEY\"}\n\
             @call py__env {\"name\": \"MCP_GIVEN\"}\n\
             @call py__env {\"name\": \"MCP_PASSED\"}\n\
             @call py__env {\"name\": \"PATH\"}\n\
             Seen: {{tool_results}}",
            200.0,
        )
        .env("OPENAI_API_KEY", "sk-chorus-secret")
        .env("MCP_PASSED", "named in inherit_env")
        .raw_toml(&toml);
    let server = TestServer::start(config).await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("env")).await?;
    let (_, events) = run_with_tools(&user, "env/demo", json!(["py"])).await?;
    // What the server saw for each variable asked (the calls run concurrently).
    let seen = |name: &str| -> Result<String> {
        let call = events
            .iter()
            .find(|e| e.kind == "tool_call" && e.data["arguments"]["name"] == name)
            .with_context(|| format!("no call for {name}"))?;
        let result = events
            .iter()
            .find(|e| e.kind == "tool_result" && e.data["call_id"] == call.data["id"])
            .with_context(|| format!("no result for {name}"))?;
        Ok(result.data["output"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let outputs = [
        seen("OPENAI_API_KEY")?,
        seen("MCP_GIVEN")?,
        seen("MCP_PASSED")?,
        seen("PATH")?,
    ];
    ensure!(
        outputs[0] == "<unset>",
        "the provider key in Chorus's environment reached the MCP server: {outputs:?}"
    );
    ensure!(outputs[1] == "configured", "{outputs:?}");
    ensure!(outputs[2] == "named in inherit_env", "{outputs:?}");
    ensure!(
        outputs[3] != "<unset>",
        "PATH is passed, programs need it: {outputs:?}"
    );
    Ok(())
}
