//! Private Redis and PostgreSQL servers of one test, which the test may kill and
//! start again (the shared services of the machine are never restarted).
//!
//! [`PrivateRedis`] is a `redis-server` on a free loopback port that keeps nothing on
//! disk, as the machine's own Redis: a restart comes back empty. [`PrivatePostgres`] is
//! a cluster made with `initdb` in a temp dir and run with `pg_ctl` (as the `postgres`
//! user when the test runs as root); a restart keeps its data (crash recovery).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

use crate::wait::until;

/// How long a private server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `redis-server` of one test, with no persistence.
pub struct PrivateRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` (from `$PATH`) on a free port; returns once it answers PING.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("chorus-redis-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let mut redis = Self {
            port: crate::server::free_port()?,
            dir,
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot spawn redis-server (is it on PATH?)")?;
        self.child = Some(child);
        let client = redis::Client::open(self.url())?;
        until("the private Redis to answer PING", START_TIMEOUT, || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok((pong == "PONG").then_some(()))
            }
        })
        .await
    }

    /// SIGKILL: everything it held is gone.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .context("the private Redis is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts it again on the same port (empty).
    pub async fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the private Redis is still running");
        }
        self.spawn().await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A PostgreSQL cluster of one test.
pub struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    dir: TempDir,
}

impl PrivatePostgres {
    /// `initdb` (trust authentication on loopback) and `pg_ctl start`; returns once
    /// it accepts connections.
    pub async fn start() -> Result<Self> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("chorus-pg-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let pg = Self {
            port: crate::server::free_port()?,
            bin,
            dir,
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()?;
            if !status.success() {
                bail!("cannot give the cluster's directory to the postgres user");
            }
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )
        .await?;
        pg.pg_ctl_start().await?;
        Ok(pg)
    }

    /// The URL of database `postgres` as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn pg_ctl_start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.path().join("pg.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                &START_TIMEOUT.as_secs().to_string(),
                "start",
            ],
        )
        .await
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: every
    /// connection cut, no checkpoint), then starts it again.
    pub async fn restart_immediate(&self) -> Result<()> {
        self.stop_immediate().await?;
        self.pg_ctl_start().await
    }

    async fn stop_immediate(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .await
    }

    /// Runs a PostgreSQL program, as `postgres` when the test is root.
    async fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            tokio::process::Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(START_TIMEOUT * 2, cmd.output())
            .await
            .with_context(|| format!("{program} did not finish"))??;
        if !out.status.success() {
            bail!(
                "{program} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Best effort; a server left running would keep its port and directory.
        let path = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = cmd
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`, or `$CHORUS_TEST_PG_BIN`.
fn postgres_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CHORUS_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (set CHORUS_TEST_PG_BIN to PostgreSQL's bin dir)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin.join("initdb"))
                .is_file()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin (set CHORUS_TEST_PG_BIN)")
}

fn is_root() -> bool {
    // `id -u` rather than a libc call: the harness has no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
