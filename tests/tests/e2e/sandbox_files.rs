//! The workspace file endpoints over HTTP: what a sandbox execution wrote is listed and
//! downloadable by the conversation's owner; another account gets 404; paths leaving
//! the workspace are refused. The execution runs on the real Docker engine against
//! the server's data directory (the tool loop that calls it lands separately).

use anyhow::{Result, ensure};
use chorus_core::sandbox::{DockerSandbox, ExecutionRequest, Sandbox, SandboxConfig};
use chorus_model::ids::{AccountId, ConversationId};
use chorus_tests::{ServerConfig, TestServer, logged_in_client, script, unique_name};
use tokio_util::sync::CancellationToken;

fn docker_host() -> String {
    std::env::var("CHORUS_TEST_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_files_are_downloadable_by_their_owner_only() -> Result<()> {
    let host = docker_host();
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &script(5), 200.0)
            .raw_toml(&format!("[sandbox]\ndocker_host = \"{host}\"")),
    )
    .await?;
    let alice = logged_in_client(&server, &unique_name("alice")).await?;
    let bob = logged_in_client(&server, &unique_name("bob")).await?;
    let conversation = alice.create_conversation(None).await?;
    let me = alice.me().await?;
    let account_id = me["id"].as_str().unwrap_or_default().to_string();
    let account = AccountId::parse(me["id"].as_str().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!("no account id in /api/me: {me}"))?;

    let sandbox = DockerSandbox::new(
        SandboxConfig {
            docker_host: Some(host.clone()),
            ..SandboxConfig::default()
        },
        &server.data_dir(),
        "e2e-files",
    );
    ensure!(
        sandbox.available().await,
        "Docker is required and does not answer at {host}"
    );
    let out = sandbox
        .execute(
            ExecutionRequest {
                account,
                conversation: ConversationId::parse(&conversation).unwrap(),
                language: "python".into(),
                code: "import os\nos.makedirs('out', exist_ok=True)\nopen('out/report.csv', 'w').write('a,b\\n1,2\\n')".into(),
            },
            CancellationToken::new(),
        )
        .await?;
    ensure!(out.exit_code == Some(0), "{out:?}");

    // The owner lists and downloads it.
    let resp = alice
        .get(&format!("/api/conversations/{conversation}/files"))
        .await?;
    ensure!(resp.status() == 200, "list: {}", resp.status());
    let list: serde_json::Value = resp.json().await?;
    ensure!(
        list["files"] == serde_json::json!([{"path": "out/report.csv", "size": 8}]),
        "{list}"
    );
    let resp = alice
        .get(&format!(
            "/api/conversations/{conversation}/files/out/report.csv"
        ))
        .await?;
    ensure!(resp.status() == 200, "download: {}", resp.status());
    ensure!(
        resp.headers()["content-disposition"] == "attachment; filename=\"report.csv\"",
        "{:?}",
        resp.headers()
    );
    ensure!(resp.text().await? == "a,b\n1,2\n");

    // Another account: not found, for the list and the file.
    for path in ["files", "files/out/report.csv"] {
        let resp = bob
            .get(&format!("/api/conversations/{conversation}/{path}"))
            .await?;
        ensure!(resp.status() == 404, "bob {path}: {}", resp.status());
    }

    // Traversal: refused with 400, never the file outside.
    for path in ["out/..%2F..%2F..%2Fchorus.db", "..%2Fx", "%2Fetc%2Fpasswd"] {
        let resp = alice
            .get(&format!("/api/conversations/{conversation}/files/{path}"))
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        ensure!(
            status == 400 && body.contains("invalid file path"),
            "{path}: {status} {body}"
        );
    }
    let resp = alice
        .get(&format!(
            "/api/conversations/{conversation}/files/out/missing.txt"
        ))
        .await?;
    ensure!(resp.status() == 404, "missing: {}", resp.status());

    // Deleting the conversation deletes its workspace.
    let workspace = server
        .data_dir()
        .join("sandbox")
        .join(&account_id)
        .join(&conversation);
    ensure!(workspace.join("out/report.csv").is_file(), "{workspace:?}");
    let resp = alice
        .request(
            reqwest::Method::DELETE,
            &format!("/api/conversations/{conversation}"),
        )
        .send()
        .await?;
    ensure!(resp.status().is_success(), "delete: {}", resp.status());
    ensure!(
        !workspace.exists(),
        "{workspace:?} survived its conversation"
    );
    Ok(())
}
