//! [`TestServer`]: one `chorus serve` child process with its own config file, data
//! directory and log, on a free loopback port.
//!
//! The server's stderr and stdout go to `server.log` in its temp dir; the tail of the
//! log is printed when the server is dropped, so a failing test shows what the server
//! said (libtest only shows captured output of failing tests).

use crate::client::ApiClient;
use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to answer `/healthz` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `chorus` binary under test: `$CHORUS_BIN`, else `chorus` next to the directory
/// of the test executable (`target/debug/deps/e2e-*` → `target/debug/chorus`).
pub fn chorus_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CHORUS_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("CHORUS_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("chorus{}", std::env::consts::EXE_SUFFIX)))
        .context("the test executable has no parent directory")?;
    if !bin.is_file() {
        bail!(
            "the chorus binary is missing at {}: run `cargo build -p chorus` first \
             (with the same CARGO_TARGET_DIR), or set CHORUS_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// A model provider in the server's config.
#[derive(Clone, Debug)]
pub enum ProviderSpec {
    /// The deterministic provider: replies with `text` at `tokens_per_second`.
    Scripted {
        id: String,
        text: String,
        tokens_per_second: f64,
    },
    /// An HTTP provider of `kind` (`openai`, `anthropic`, `gemini`, `ollama`; the fake
    /// one, in tests). No `api_key` and no `models` leave those keys out (Ollama
    /// discovers its models).
    Http {
        id: String,
        kind: &'static str,
        base_url: String,
        api_key: Option<String>,
        models: Vec<String>,
    },
}

/// What a [`TestServer`] is configured with. Built with the methods below; turned
/// into `chorus.toml` by [`ServerConfig::to_toml`].
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// `None`: the embedded SQLite database in the data dir.
    pub database_url: Option<String>,
    /// Redis URL and key prefix of the journal; `None`: the in-process journal.
    pub redis: Option<(String, String)>,
    pub instance_id: Option<String>,
    pub lease_ttl_secs: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub providers: Vec<ProviderSpec>,
    /// Extra `(provider id, key, value)` settings written into that provider's table.
    pub provider_settings: Vec<(String, String, toml::Value)>,
    /// Raw TOML merged into the file (tables key by key; e.g. `[[aliases]]`).
    pub raw_toml: Vec<String>,
    /// Extra `(key, value)` settings of the `[server]` section.
    pub server_settings: Vec<(String, toml::Value)>,
    /// Environment variables of the `chorus` process.
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn postgres(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    pub fn redis_journal(mut self, url: &str, key_prefix: &str) -> Self {
        self.redis = Some((url.to_string(), key_prefix.to_string()));
        self
    }

    /// Sets an environment variable of the `chorus` process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets `server.KEY` (the section the harness writes itself, so raw TOML cannot).
    pub fn server_setting(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.server_settings.push((key.to_string(), value.into()));
        self
    }

    pub fn instance_id(mut self, id: &str) -> Self {
        self.instance_id = Some(id.to_string());
        self
    }

    pub fn lease_ttl_secs(mut self, secs: u64) -> Self {
        self.lease_ttl_secs = Some(secs);
        self
    }

    pub fn checkpoint_interval_ms(mut self, ms: u64) -> Self {
        self.checkpoint_interval_ms = Some(ms);
        self
    }

    pub fn scripted(mut self, id: &str, text: &str, tokens_per_second: f64) -> Self {
        self.providers.push(ProviderSpec::Scripted {
            id: id.to_string(),
            text: text.to_string(),
            tokens_per_second,
        });
        self
    }

    /// An HTTP provider of `kind` at `base_url`.
    fn http(
        mut self,
        id: &str,
        kind: &'static str,
        base_url: &str,
        api_key: Option<&str>,
        models: &[&str],
    ) -> Self {
        self.providers.push(ProviderSpec::Http {
            id: id.to_string(),
            kind,
            base_url: base_url.to_string(),
            api_key: api_key.map(str::to_string),
            models: models.iter().map(|m| m.to_string()).collect(),
        });
        self
    }

    pub fn openai(self, id: &str, base_url: &str, api_key: &str, models: &[&str]) -> Self {
        self.http(id, "openai", base_url, Some(api_key), models)
    }

    pub fn anthropic(self, id: &str, base_url: &str, api_key: &str, models: &[&str]) -> Self {
        self.http(id, "anthropic", base_url, Some(api_key), models)
    }

    pub fn gemini(self, id: &str, base_url: &str, api_key: &str, models: &[&str]) -> Self {
        self.http(id, "gemini", base_url, Some(api_key), models)
    }

    /// An Ollama provider; with no `models`, the server discovers them at start.
    pub fn ollama(self, id: &str, base_url: &str, models: &[&str]) -> Self {
        self.http(id, "ollama", base_url, None, models)
    }

    /// An OpenAI Responses API provider (`kind = "openai_responses"`): written like
    /// [`ServerConfig::openai`], with the kind overridden.
    pub fn openai_responses(
        self,
        id: &str,
        base_url: &str,
        api_key: &str,
        models: &[&str],
    ) -> Self {
        self.openai(id, base_url, api_key, models)
            .provider_setting(id, "kind", "openai_responses")
    }

    /// An Azure OpenAI provider (`kind = "azure"`): `base_url` is the resource
    /// endpoint and `deployments` its deployment names; written like
    /// [`ServerConfig::openai`], with the kind and `api_version` set.
    pub fn azure(
        self,
        id: &str,
        base_url: &str,
        api_key: &str,
        api_version: &str,
        deployments: &[&str],
    ) -> Self {
        self.openai(id, base_url, api_key, deployments)
            .provider_setting(id, "kind", "azure")
            .provider_setting(id, "api_version", api_version)
    }

    /// An AWS Bedrock provider (`kind = "bedrock"`): `access_key_id` goes in
    /// `api_key`, with `secret_key` and `region` set; written like
    /// [`ServerConfig::openai`], with the kind overridden.
    pub fn bedrock(
        self,
        id: &str,
        base_url: &str,
        region: &str,
        access_key_id: &str,
        secret_key: &str,
        models: &[&str],
    ) -> Self {
        self.openai(id, base_url, access_key_id, models)
            .provider_setting(id, "kind", "bedrock")
            .provider_setting(id, "region", region)
            .provider_setting(id, "secret_key", secret_key)
    }

    /// Sets `key = value` in the table of provider `id`.
    pub fn provider_setting(mut self, id: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.provider_settings
            .push((id.to_string(), key.to_string(), value.into()));
        self
    }

    /// Appends raw TOML to the config file.
    pub fn raw_toml(mut self, text: &str) -> Self {
        self.raw_toml.push(text.to_string());
        self
    }

    /// The config file text for a server listening on `listen`.
    pub fn to_toml(&self, listen: &str) -> String {
        use toml::{Table, Value};
        let mut root = Table::new();
        let mut server = Table::new();
        server.insert("listen".into(), listen.into());
        if let Some(id) = &self.instance_id {
            server.insert("instance_id".into(), id.as_str().into());
        }
        for (key, value) in &self.server_settings {
            server.insert(key.clone(), value.clone());
        }
        root.insert("server".into(), Value::Table(server));
        if let Some(url) = &self.database_url {
            let mut db = Table::new();
            db.insert("url".into(), url.as_str().into());
            root.insert("database".into(), Value::Table(db));
        }
        if let Some((url, prefix)) = &self.redis {
            let mut journal = Table::new();
            journal.insert("redis_url".into(), url.as_str().into());
            journal.insert("key_prefix".into(), prefix.as_str().into());
            root.insert("journal".into(), Value::Table(journal));
        }
        let mut engine = Table::new();
        if let Some(ttl) = self.lease_ttl_secs {
            engine.insert("lease_ttl_secs".into(), Value::Integer(ttl as i64));
        }
        if let Some(ms) = self.checkpoint_interval_ms {
            engine.insert("checkpoint_interval_ms".into(), Value::Integer(ms as i64));
        }
        root.insert("engine".into(), Value::Table(engine));
        let providers = self
            .providers
            .iter()
            .map(|p| {
                let mut t = Table::new();
                match p {
                    ProviderSpec::Scripted {
                        id,
                        text,
                        tokens_per_second,
                    } => {
                        t.insert("id".into(), id.as_str().into());
                        t.insert("kind".into(), "scripted".into());
                        t.insert("models".into(), Value::Array(vec!["demo".into()]));
                        t.insert("text".into(), text.as_str().into());
                        t.insert("tokens_per_second".into(), Value::Float(*tokens_per_second));
                    }
                    ProviderSpec::Http {
                        id,
                        kind,
                        base_url,
                        api_key,
                        models,
                    } => {
                        t.insert("id".into(), id.as_str().into());
                        t.insert("kind".into(), (*kind).into());
                        t.insert("base_url".into(), base_url.as_str().into());
                        if let Some(key) = api_key {
                            t.insert("api_key".into(), key.as_str().into());
                        }
                        if !models.is_empty() {
                            t.insert(
                                "models".into(),
                                Value::Array(models.iter().map(|m| m.as_str().into()).collect()),
                            );
                        }
                        // Fail fast in tests rather than after the default two minutes.
                        t.insert("idle_timeout_secs".into(), Value::Integer(20));
                    }
                }
                let id = t
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for (pid, key, value) in &self.provider_settings {
                    if *pid == id {
                        t.insert(key.clone(), value.clone());
                    }
                }
                Value::Table(t)
            })
            .collect();
        root.insert("providers".into(), Value::Array(providers));
        // Chorus's defaults limit messages and concurrent replies per account; tests
        // that do not test the limits send as fast as they need.
        let mut limits = Table::new();
        limits.insert("messages_per_window".into(), Value::Integer(0));
        limits.insert("max_concurrent_runs".into(), Value::Integer(0));
        root.insert("limits".into(), Value::Table(limits));
        for raw in &self.raw_toml {
            // `@SERVER_URL@` stands for the server's own URL (known once its port is).
            let raw = raw.replace("@SERVER_URL@", &format!("http://{listen}"));
            let table: Table = toml::from_str(&raw)
                .unwrap_or_else(|e| panic!("a test's raw TOML is not valid: {e}\n{raw}"));
            merge(&mut root, table);
        }
        toml::to_string(&root).unwrap_or_default()
    }
}

/// Merges `from` into `into`: tables key by key, any other value replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// One `chorus serve` process. Killed (SIGKILL) when dropped.
pub struct TestServer {
    bin: PathBuf,
    dir: TempDir,
    config: ServerConfig,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl TestServer {
    /// Writes the config and starts the server; returns once `/healthz` answers.
    pub async fn start(config: ServerConfig) -> Result<Self> {
        let bin = chorus_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("chorus-e2e-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let mut server = Self {
            bin,
            dir,
            config,
            port: free_port()?,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        };
        server.write_config()?;
        server.spawn().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client of this server without a session.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url())
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("chorus.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server (all its lives) wrote to stderr and stdout.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn write_config(&self) -> Result<()> {
        let listen = format!("127.0.0.1:{}", self.port);
        std::fs::write(self.config_path(), self.config.to_toml(&listen))
            .context("cannot write the server config")
    }

    /// A `chorus --config F --data-dir D` command with a clean environment (no
    /// `CHORUS_*` overrides leaking in from the test's environment).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHORUS_") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.config.env.iter().map(|(k, v)| (k, v)));
        cmd.env("NO_COLOR", "1")
            .env("CHORUS_LOG", "info,sqlx=warn")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir());
        cmd
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the server log")?;
        writeln!(log, "===== chorus serve on port {} =====", self.port)?;
        let child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot spawn {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let health = format!("{}/healthz", self.url());
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "chorus serve exited with {status} before answering /healthz; its log:\n{}",
                    tail(&self.log(), 80)
                );
            }
            if let Ok(resp) = self.http.get(&health).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "chorus serve did not answer {health} within {START_TIMEOUT:?}; its log:\n{}",
                    tail(&self.log(), 80)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, no last checkpoint, nothing flushed.
    pub fn kill_9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        // `Child::kill` sends SIGKILL on Unix.
        child.kill().context("cannot kill the server")?;
        child.wait().context("cannot reap the killed server")?;
        Ok(())
    }

    /// SIGTERM, as an orchestrator stopping the instance (a rolling restart): waits
    /// until the process has drained and exited; fails unless it exited by itself,
    /// successfully, within `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "chorus serve exited with {status} after SIGTERM; its log:\n{}",
                        tail(&self.log(), 80)
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "chorus serve did not exit within {timeout:?} of SIGTERM; its log:\n{}",
                    tail(&self.log(), 80)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again with the same config, data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.kill_9()?;
        }
        self.spawn().await
    }

    /// Runs a CLI command of this server's config (`chorus --config F --data-dir D
    /// ARGS`), feeding `stdin`; fails unless it exits 0.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<CliOutput> {
        let out = run_cli(self.command(), args, stdin).await?;
        if !out.success {
            bail!(
                "`chorus {}` failed\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }

    /// `chorus user create NAME --password-stdin`.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        self.cli(
            &["user", "create", name, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .await?;
        Ok(())
    }

    /// `chorus apikey create NAME`: the key it prints on stdout.
    pub async fn create_api_key(&self, user: &str) -> Result<String> {
        let out = self.cli(&["apikey", "create", user], None).await?;
        let key = out.stdout.trim().to_string();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "`chorus apikey create` printed {:?}, not one key",
                out.stdout
            );
        }
        Ok(key)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shown by libtest only when the test failed.
        eprintln!(
            "----- log of chorus server {} ({}) -----\n{}\n----- end of log -----",
            self.url(),
            self.config
                .instance_id
                .as_deref()
                .unwrap_or("default instance id"),
            tail(&self.log(), 150)
        );
    }
}

/// What a CLI command printed and whether it succeeded.
#[derive(Debug)]
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `chorus` binary with `args` (no config of a server), e.g. `config check`.
pub async fn run_chorus(args: &[&str], stdin: Option<&str>) -> Result<CliOutput> {
    let mut cmd = Command::new(chorus_bin()?);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHORUS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
    run_cli(cmd, args, stdin).await
}

async fn run_cli(cmd: Command, args: &[&str], stdin: Option<&str>) -> Result<CliOutput> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("cannot spawn chorus")?;
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().context("no stdin pipe")?;
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .with_context(|| format!("`chorus {}` did not exit within 60s", args.join(" ")))??;
    Ok(CliOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999
/// by default), which the kernel draws from for every socket bound to port 0 and
/// every outgoing connection. A server killed and restarted on its port (the
/// `kill -9` tests) then finds it free again: a port from the ephemeral range could
/// be taken meanwhile by another test's fake server or connection, and the restarted
/// server failed to listen while the other process answered its health check.
const FREE_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A loopback port nobody listens on right now, from [`FREE_PORTS`]: each call of
/// this process takes the next one that binds, so no two calls share a port until
/// the range wraps; processes start at different places in it.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = FREE_PORTS.end - FREE_PORTS.start;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = (FREE_PORTS.start + offset) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {FREE_PORTS:?}")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines ...]\n"));
    }
    out.push_str(&all[start..].join("\n"));
    out
}
