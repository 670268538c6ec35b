//! The workspace quota is a cap on everything an execution writes to `/mnt`, not only
//! on each file: a program writing many small files past `workspace_quota_mb` gets
//! "No space left on device" from the kernel (the volume is a tmpfs of the quota's
//! size), the tool result names the quota, the run goes on, and neither container nor
//! volume is left on the Docker host. The real `chorus` binary, the real engine.

use crate::finished;
use crate::mcp_tools::{result_for, set_tools};
use crate::sandbox_tool::{containers, docker_host};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::{Resume, ServerConfig, TestServer, logged_in_client, unique_name};
use serde_json::json;
use std::process::Command;

/// Names of the volumes (in use or not) labelled with this server's instance.
fn volumes(instance: &str) -> Result<Vec<String>> {
    let out = Command::new("docker")
        .args(["-H", &docker_host(), "volume", "ls", "-q", "--filter"])
        .arg(format!("label=chorus.sandbox.instance={instance}"))
        .output()
        .context("running the docker CLI")?;
    ensure!(
        out.status.success(),
        "docker volume ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn many_small_files_past_the_quota_fail_clearly_and_nothing_leaks() -> Result<()> {
    // 4 KiB files until a write fails: a 1 MiB quota holds about 256 of them; without
    // the cap the loop would stop only at the 5,000th.
    let code = "\
n = 0
try:
    for n in range(5000):
        with open(f'part{n}.bin', 'wb') as f:
            f.write(b'x' * 4096)
except OSError as e:
    print('stopped after', n, 'files:', e.strerror)
else:
    print('wrote all', n + 1)
";
    let script = format!(
        "@call code_interpreter {}\nThe sandbox said: {{{{tool_results}}}}",
        json!({"language": "python", "code": code})
    );
    let instance = unique_name("sbquota");
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &script, 200.0)
            .instance_id(&instance)
            .raw_toml(&format!(
                "[sandbox]\nenabled = true\ndocker_host = \"{}\"\nworkspace_quota_mb = 1\n",
                docker_host()
            )),
    )
    .await?;
    let alice = logged_in_client(&server, &unique_name("alice")).await?;
    let conversation = alice.create_conversation(Some("s/demo")).await?;
    set_tools(&alice, &conversation, json!(["code_interpreter"])).await?;
    let sent = alice.send_message(&conversation, "fill it").await?;
    let events = alice
        .events_to_finished(&sent.run_id, Resume::Start)
        .await?;

    // The run goes on past the failed writes and completes.
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    ensure!(
        delta_text(&events).starts_with("The sandbox said: "),
        "{events:?}"
    );
    let result = result_for(&events, "code_interpreter")?;
    let output = result.data["output"].as_str().unwrap_or_default();
    let stopped: usize = output
        .split("stopped after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("the program was never refused a write: {output}"))?;
    ensure!(
        (200..=272).contains(&stopped),
        "{stopped} files of 4 KiB fit a 1 MiB quota: {output}"
    );
    ensure!(
        output.contains("No space left on device")
            && output.contains("sandbox.workspace_quota_mb = 1 MiB"),
        "the result does not name the quota: {output}"
    );

    // Nothing is left on the Docker host: no container, no volume.
    ensure!(containers(&instance)?.is_empty(), "a container was left");
    ensure!(volumes(&instance)?.is_empty(), "a volume was left");
    drop(server);
    Ok(())
}
