//! A Docker Compose deployment driven the way an operator drives one: the compose
//! tool this machine has (`docker compose`, else Debian's `docker-compose`), a project
//! name of its own, an env file, the images `scripts/container-image` builds without
//! a registry, and `down -v` when dropped, whatever happened.
//!
//! A missing Docker engine or compose tool fails the test and names what to install;
//! nothing is skipped.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

/// The repository's root (the tests crate is one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Docker engine the tests use: `CHORUS_TEST_DOCKER_HOST` (set by
/// scripts/provision/50-docker.sh), else `DOCKER_HOST`; it must answer.
pub async fn docker_host() -> Result<String> {
    let host = std::env::var("CHORUS_TEST_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let out = output(docker(&host).args(["info", "--format", "{{.ServerVersion}}"])).await;
    match out {
        Ok(version) if !version.trim().is_empty() => Ok(host),
        Ok(_) | Err(_) => bail!(
            "Docker is required for the compose test and does not answer at {host}: \
             run scripts/test (scripts/provision/50-docker.sh starts an engine) or set \
             CHORUS_TEST_DOCKER_HOST ({})",
            out.err().map(|e| format!("{e:#}")).unwrap_or_default()
        ),
    }
}

fn docker(host: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.env("DOCKER_HOST", host).kill_on_drop(true);
    cmd
}

/// Runs `cmd`; its stdout, or an error with its stderr.
async fn output(cmd: &mut tokio::process::Command) -> Result<String> {
    let shown = format!("{:?}", cmd.as_std());
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The compose command: `docker compose` (v2) when the plugin answers, else
/// `docker-compose` (v1, Debian bookworm's package).
async fn compose_tool(host: &str) -> Result<Vec<String>> {
    if output(docker(host).args(["compose", "version"]))
        .await
        .is_ok()
    {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    let mut v1 = tokio::process::Command::new("docker-compose");
    if output(v1.arg("version")).await.is_ok() {
        return Ok(vec!["docker-compose".into()]);
    }
    bail!(
        "a compose tool is required for the compose test: neither `docker compose` nor \
         `docker-compose` runs (scripts/provision/55-compose.sh installs Debian's \
         docker-compose)"
    )
}

/// The images `scripts/container-image --all --binary BIN` built (or found built):
/// `CHORUS_IMAGE`, `POSTGRES_IMAGE`, `REDIS_IMAGE`, `PROXY_IMAGE`.
pub async fn build_images(host: &str, chorus_bin: &Path) -> Result<BTreeMap<String, String>> {
    let script = repo_root().join("scripts/container-image");
    let mut cmd = tokio::process::Command::new(&script);
    cmd.env("DOCKER_HOST", host)
        .arg("--all")
        .arg("--binary")
        .arg(chorus_bin)
        .stderr(Stdio::inherit());
    let out = output(&mut cmd).await?;
    let images: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for name in [
        "CHORUS_IMAGE",
        "POSTGRES_IMAGE",
        "REDIS_IMAGE",
        "PROXY_IMAGE",
    ] {
        if !images.contains_key(name) {
            bail!("{} printed no {name}: {out}", script.display());
        }
    }
    Ok(images)
}

/// What `down -v` left behind: the project's containers, volumes and networks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }
}

/// One compose project (`deploy/compose.yaml` under a unique name) with its env file.
pub struct Compose {
    host: String,
    tool: Vec<String>,
    file: PathBuf,
    project: String,
    env: BTreeMap<String, String>,
    env_file: PathBuf,
    /// Holds the env file.
    _dir: TempDir,
    down: bool,
}

impl Compose {
    /// The project `project` of compose file `file`, with the variables `env` in its
    /// env file (`--env-file`, and `CHORUS_ENV_FILE` for the containers' `env_file`).
    pub async fn new(
        host: &str,
        file: &Path,
        project: &str,
        env: BTreeMap<String, String>,
    ) -> Result<Self> {
        let tool = compose_tool(host).await?;
        let dir = tempfile::Builder::new()
            .prefix("chorus-compose-")
            .tempdir()?;
        let compose = Self {
            host: host.to_string(),
            tool,
            file: file.to_path_buf(),
            project: project.to_string(),
            env,
            env_file: dir.path().join("compose.env"),
            _dir: dir,
            down: false,
        };
        compose.write_env()?;
        Ok(compose)
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// Sets a variable of the env file (for the services started after).
    pub fn set_env(&mut self, name: &str, value: &str) -> Result<()> {
        self.env.insert(name.to_string(), value.to_string());
        self.write_env()
    }

    fn write_env(&self) -> Result<()> {
        let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&self.env_file, text)
            .with_context(|| format!("writing {}", self.env_file.display()))
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.tool[0]);
        cmd.args(&self.tool[1..])
            .arg("--env-file")
            .arg(&self.env_file)
            .arg("-f")
            .arg(&self.file)
            .arg("-p")
            .arg(&self.project)
            .env("DOCKER_HOST", &self.host)
            .env("CHORUS_ENV_FILE", &self.env_file)
            .kill_on_drop(true);
        cmd
    }

    /// `compose ARGS`; its stdout.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        output(self.command().args(args)).await
    }

    /// `up -d` of `services` (all when empty); it returns once they started, and those
    /// others wait on are healthy.
    pub async fn up(&self, services: &[&str]) -> Result<()> {
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend_from_slice(services);
        self.run(&args).await.map(drop)
    }

    /// `exec -T SERVICE ARGS` with `stdin` (if any) on its standard input.
    pub async fn exec(&self, service: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(["exec", "-T", service]).args(args);
        let shown = format!("compose exec {service} {args:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {shown}"))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.unwrap_or_default().as_bytes())
                .await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "{shown} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The id of a service's container.
    pub async fn container(&self, service: &str) -> Result<String> {
        let id = self.run(&["ps", "-q", service]).await?.trim().to_string();
        if id.is_empty() {
            bail!("the service {service} has no container");
        }
        Ok(id)
    }

    /// `docker inspect --format FORMAT` of a service's container.
    pub async fn inspect(&self, service: &str, format: &str) -> Result<String> {
        let id = self.container(service).await?;
        Ok(
            output(docker(&self.host).args(["inspect", "--format", format, &id]))
                .await?
                .trim()
                .to_string(),
        )
    }

    /// Kills a service's container with SIGKILL, as a crash or a lost machine would
    /// end it (Docker does not restart a container killed this way).
    pub async fn kill(&self, service: &str) -> Result<()> {
        let id = self.container(service).await?;
        output(docker(&self.host).args(["kill", "--signal", "KILL", &id]))
            .await
            .map(drop)
    }

    /// The gateway address of the project's network: the host, as its containers
    /// reach it.
    pub async fn network_gateway(&self) -> Result<IpAddr> {
        let network = format!("{}_default", self.project);
        let out = output(docker(&self.host).args([
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            &network,
        ]))
        .await?;
        out.split_whitespace()
            .find_map(|a| a.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
            .with_context(|| format!("the network {network} has no IPv4 gateway: {out:?}"))
    }

    /// The names of the volumes the project's containers mount (named or anonymous).
    pub async fn mounted_volumes(&self) -> Result<Vec<String>> {
        let ids = self.labelled(&["ps", "-aq"]).await?;
        let mut volumes = Vec::new();
        for id in ids {
            let out = output(docker(&self.host).args([
                "inspect",
                "--format",
                "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
                &id,
            ]))
            .await?;
            volumes.extend(out.split_whitespace().map(str::to_string));
        }
        volumes.sort();
        volumes.dedup();
        Ok(volumes)
    }

    /// `docker ARGS --filter label=com.docker.compose.project=PROJECT`, one id a line.
    async fn labelled(&self, args: &[&str]) -> Result<Vec<String>> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        let out = output(docker(&self.host).args(args).args(["--filter", &filter])).await?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }

    /// `down -v --remove-orphans`, then what is left of the project: containers,
    /// networks and volumes labelled with it, and any of `volumes` still there.
    pub async fn down(&mut self, volumes: &[String]) -> Result<Leftovers> {
        self.down = true;
        self.run(&["down", "-v", "--remove-orphans", "--timeout", "5"])
            .await?;
        let mut left = Leftovers {
            containers: self.labelled(&["ps", "-aq"]).await?,
            volumes: self.labelled(&["volume", "ls", "-q"]).await?,
            networks: self.labelled(&["network", "ls", "-q"]).await?,
        };
        let existing = output(docker(&self.host).args(["volume", "ls", "-q"])).await?;
        for name in existing.split_whitespace() {
            if volumes.iter().any(|v| v == name) && !left.volumes.iter().any(|v| v == name) {
                left.volumes.push(name.to_string());
            }
        }
        Ok(left)
    }

    /// A service's last log lines, for a failure message.
    pub async fn logs(&self, service: &str) -> String {
        self.run(&["logs", "--no-color", "--tail", "40", service])
            .await
            .unwrap_or_else(|e| format!("{e:#}"))
    }
}

impl Drop for Compose {
    /// A test that failed half way still removes everything it started.
    fn drop(&mut self) {
        if self.down {
            return;
        }
        let mut cmd = std::process::Command::new(&self.tool[0]);
        let _ = cmd
            .args(&self.tool[1..])
            .arg("--env-file")
            .arg(&self.env_file)
            .arg("-f")
            .arg(&self.file)
            .arg("-p")
            .arg(&self.project)
            .args(["down", "-v", "--remove-orphans", "--timeout", "2"])
            .env("DOCKER_HOST", &self.host)
            .env("CHORUS_ENV_FILE", &self.env_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
