//! The CLI next to a running server: administrative commands share the server's
//! config (and so its instance id) and database, and must leave its runs alone.

use crate::{only_assistant, s};
use anyhow::{Result, ensure};
use chorus_tests::{ServerConfig, TestServer, logged_in_client, script, unique_name};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn cli_commands_leave_running_runs_alone() -> Result<()> {
    // Long enough (10 s) that two CLI commands (argon2 hashing in a debug build, on a
    // loaded CI machine) finish while it streams.
    let text = script(200);
    let server = TestServer::start(
        ServerConfig::new()
            .instance_id("busy")
            .lease_ttl_secs(3)
            .checkpoint_interval_ms(200)
            .scripted("s", &text, 20.0),
    )
    .await?;
    let name = unique_name("cli");
    let client = logged_in_client(&server, &name).await?;
    let conversation = client.create_conversation(None).await?;
    let run = client
        .send_message(&conversation, "keep going")
        .await?
        .run_id;
    chorus_tests::wait::until("the run to stream", Duration::from_secs(10), || async {
        let view = client.run(&run).await?;
        Ok((!s(&view, "text").is_empty()).then_some(()))
    })
    .await?;

    // Same config file, same data dir, same instance id as the server.
    server
        .create_user(&unique_name("second"), chorus_tests::PASSWORD)
        .await?;
    server.create_api_key(&name).await?;
    let view = client.run(&run).await?;
    ensure!(
        s(&view, "status") == "streaming",
        "after two CLI commands the run is {view}"
    );

    let view = client.wait_run_ended(&run, Duration::from_secs(40)).await?;
    ensure!(
        s(&view, "status") == "complete" && s(&view, "text") == text,
        "the run ended as {view}"
    );
    let messages = client.messages(&conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == text);
    Ok(())
}
