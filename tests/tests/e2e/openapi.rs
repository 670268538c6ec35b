//! The OpenAPI document the server serves passes a standard validator:
//! `openapi-spec-validator` from PyPI (installed by scripts/provision/10-openapi.sh),
//! run on what `GET /api/openapi.json` answers. A document that does not validate
//! (a router wildcard such as `{*path}` instead of a path parameter, a parameter
//! that is not in its path, a broken `$ref`) fails the run.

use anyhow::{Context, Result, bail, ensure};
use chorus_tests::litellm::test_python;
use chorus_tests::{ServerConfig, TestServer};
use std::process::Command;

/// The version scripts/provision/10-openapi.sh installs.
const VALIDATOR_VERSION: &str = "0.9.0";

#[tokio::test]
async fn served_openapi_document_passes_openapi_spec_validator() -> Result<()> {
    let python = test_python();
    let installed = Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        bail!(
            "openapi-spec-validator is not importable by {}: run scripts/test (its \
             scripts/provision/10-openapi.sh installs it) or `{} -m pip install \
             openapi-spec-validator=={VALIDATOR_VERSION}`",
            python.display(),
            python.display()
        );
    }

    let server = TestServer::start(ServerConfig::new()).await?;
    let served = reqwest::get(format!("{}/api/openapi.json", server.url()))
        .await?
        .error_for_status()
        .context("GET /api/openapi.json")?
        .text()
        .await?;
    let document: serde_json::Value =
        serde_json::from_str(&served).context("the served document is not JSON")?;
    ensure!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        document["openapi"]
    );

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &served)?;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "openapi_spec_validator"])
            .arg(&file)
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stdout.contains(": OK"),
        "openapi-spec-validator refused the served document ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(())
}
