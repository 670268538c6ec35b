//! LiteLLM's proxy (the `litellm[proxy]` package from PyPI, installed by
//! `scripts/provision/20-litellm.sh`) run on a free loopback port with a config of
//! our own: a third-party server that speaks the OpenAI Chat Completions and the
//! Anthropic Messages formats, answering with its configured `mock_response`s.
//!
//! It is required, never skipped: when the proxy is not installed, [`LiteLlm::start`]
//! fails saying how to install it.

use crate::server::free_port;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The version `scripts/provision/20-litellm.sh` installs.
pub const LITELLM_VERSION: &str = "1.106.12";

/// How long the proxy may take to start (it loads a large package).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The Python of the test tools: `$CHORUS_TEST_PYTHON`, else the shared venv's.
pub fn test_python() -> PathBuf {
    std::env::var_os("CHORUS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/chorus-test-services/venv/bin/python"))
}

/// One running proxy. Killed when dropped.
pub struct LiteLlm {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl LiteLlm {
    /// Writes `config_yaml` and starts `litellm --config` on a free port; returns once
    /// `/health/liveliness` answers.
    pub async fn start(config_yaml: &str) -> Result<Self> {
        let python = test_python();
        let cli = python.with_file_name("litellm");
        let installed = Command::new(&python)
            .args(["-c", "import litellm.proxy.proxy_server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !cli.is_file() {
            bail!(
                "LiteLLM's proxy is not installed for {} (no `litellm` next to it, or \
                 `import litellm.proxy.proxy_server` fails): run scripts/test, whose \
                 scripts/provision/20-litellm.sh installs it, or \
                 `{} -m pip install 'litellm[proxy]=={LITELLM_VERSION}'`; set \
                 CHORUS_TEST_PYTHON to use another interpreter",
                python.display(),
                python.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("chorus-litellm-")
            .tempdir()?;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml)?;
        let log = std::fs::File::create(dir.path().join("litellm.log"))?;
        let port = free_port()?;
        let child = Command::new(&cli)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Offline: the bundled model price map instead of fetching one at start.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot spawn {}", cli.display()))?;
        let mut proxy = Self { child, port, dir };
        proxy.wait_alive().await?;
        Ok(proxy)
    }

    async fn wait_alive(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/health/liveliness", self.url());
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "LiteLLM exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "LiteLLM did not answer {url} within {START_TIMEOUT:?}; its log:\n{}",
            self.log()
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("litellm.log")).unwrap_or_default()
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
