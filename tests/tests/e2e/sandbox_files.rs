//! The workspace file endpoints over HTTP: what a sandbox execution wrote is listed and
//! downloadable by the conversation's owner; another account gets 404; paths leaving
//! the workspace are refused; deleting the conversation deletes its workspace. The
//! file is written by the scripted model calling `code_interpreter` through the real
//! `chorus` binary, its sandbox on the real Docker engine.

use crate::mcp_tools::result_for;
use crate::sandbox_tool::{Computed, compute, containers};
use anyhow::{Context, Result, ensure};
use chorus_tests::{logged_in_client, unique_name};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn workspace_files_are_downloadable_by_their_owner_only() -> Result<()> {
    let code = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/report.csv', 'w').write('a,b\\n1,2\\n')";
    let Computed {
        server,
        instance,
        alice,
        conversation,
        events,
    } = compute(code).await?;
    let bob = logged_in_client(&server, &unique_name("bob")).await?;
    let me = alice.me().await?;
    let account_id = me["id"]
        .as_str()
        .with_context(|| format!("no account id in /api/me: {me}"))?
        .to_string();
    let result = result_for(&events, "code_interpreter")?;
    ensure!(
        result.data["is_error"] == false && result.data["details"]["exit_code"] == 0,
        "{result:?}"
    );
    ensure!(containers(&instance)?.is_empty(), "a container was left");

    // The owner lists and downloads it.
    let resp = alice
        .get(&format!("/api/conversations/{conversation}/files"))
        .await?;
    ensure!(resp.status() == 200, "list: {}", resp.status());
    let list: serde_json::Value = resp.json().await?;
    ensure!(
        list["files"] == json!([{"path": "out/report.csv", "size": 8}]),
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
