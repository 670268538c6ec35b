//! What the gateway tests share: a server whose models are priced and quota'd, one
//! upstream that calls tools (a fake OpenAI or Anthropic API), an account with
//! credits and one whose balance is spent, each with an API key; and the official
//! SDK scripts of `tests/gateway/`, run as child processes that print what the SDK
//! returned as one JSON object.

use crate::quota_support::priced;
use anyhow::{Context, Result, bail};
use chorus_tests::fake_tool_models::{FakeToolModel, ToolWire};
use chorus_tests::litellm::test_python;
use chorus_tests::{ServerConfig, TestServer, unique_name};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The priced scripted model of `quota_support` (its reply is `quota_support::TEXT`).
pub const SCRIPTED_MODEL: &str = "s/demo";

/// How long one SDK script may take (it makes about ten calls to fakes on loopback).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// A gateway server, its tool-calling upstream and two keyed accounts.
pub struct Gateway {
    pub server: TestServer,
    pub upstream: FakeToolModel,
    /// The tool-calling model (`PROVIDER/MODEL`) served by `upstream`.
    pub model: &'static str,
    pub key: String,
    pub broke_key: String,
}

/// The server config: the priced scripted model, the tool model of `wire`, an alias
/// over it (so `/v1/models` lists it), quotas on, and `extra` TOML.
pub fn gateway_config(
    upstream: &FakeToolModel,
    wire: ToolWire,
    extra: &str,
) -> (ServerConfig, &'static str) {
    let (config, model) = match wire {
        ToolWire::OpenAi => (
            ServerConfig::new().openai("oai", &upstream.base_url(), "sk-fake", &["gpt-4o-mini"]),
            "oai/gpt-4o-mini",
        ),
        ToolWire::Anthropic => (
            ServerConfig::new().anthropic(
                "claude",
                &upstream.base_url(),
                "sk-ant-fake",
                &["claude-sonnet-4-5"],
            ),
            "claude/claude-sonnet-4-5",
        ),
    };
    let alias = format!(
        "[[aliases]]\nname = \"team-default\"\nmodels = [\"{model}\", \"{SCRIPTED_MODEL}\"]\n"
    );
    (priced(config.raw_toml(&alias), extra), model)
}

impl Gateway {
    /// Starts the upstream and the server; grants the main account 100 credits.
    pub async fn start(wire: ToolWire, extra: &str) -> Result<Self> {
        let upstream = FakeToolModel::start(wire).await?;
        let (config, model) = gateway_config(&upstream, wire, extra);
        let server = TestServer::start(config).await?;
        let (rich, broke) = (unique_name("sdk"), unique_name("broke"));
        for name in [&rich, &broke] {
            server.create_user(name, chorus_tests::PASSWORD).await?;
        }
        server.cli(&["user", "grant", &rich, "100"], None).await?;
        let key = server.create_api_key(&rich).await?;
        let broke_key = server.create_api_key(&broke).await?;
        Ok(Self {
            server,
            upstream,
            model,
            key,
            broke_key,
        })
    }

    /// Runs `program script` from `tests/gateway/` with this gateway's environment;
    /// returns the JSON object it printed.
    pub async fn run_script(&self, program: &str, script: &str) -> Result<Value> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gateway");
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg(dir.join(script))
            .current_dir(&dir)
            .env("CHORUS_URL", self.server.url())
            .env("CHORUS_KEY", &self.key)
            .env("CHORUS_BROKE_KEY", &self.broke_key)
            .env("MODEL", self.model)
            .env("SCRIPTED_MODEL", SCRIPTED_MODEL)
            .kill_on_drop(true);
        let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
            .await
            .with_context(|| format!("{script} did not end within {SCRIPT_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run {program} {script}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "{script} failed ({}):\n{stderr}\nstdout: {stdout}",
                out.status
            );
        }
        serde_json::from_str(stdout.trim()).with_context(|| {
            format!("{script} printed no JSON object:\n{stdout}\nstderr: {stderr}")
        })
    }

    /// The official Python SDK script `script`, with the test venv's interpreter.
    pub async fn python(&self, script: &str) -> Result<Value> {
        let python = test_python();
        if !python.is_file() {
            bail!(
                "{} is missing: run scripts/test (scripts/provision/25-gateway-sdks.sh installs the SDKs) or set CHORUS_TEST_PYTHON",
                python.display()
            );
        }
        self.run_script(&python.to_string_lossy(), script).await
    }

    /// The official Node SDK script `script` (its `node_modules` from npm ci).
    pub async fn node(&self, script: &str) -> Result<Value> {
        let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gateway/node_modules/openai");
        if !modules.is_dir() {
            bail!(
                "{} is missing: run scripts/test (scripts/provision/25-gateway-sdks.sh runs npm ci in tests/gateway)",
                modules.display()
            );
        }
        self.run_script("node", script).await
    }
}
