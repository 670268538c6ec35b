//! Benchmark: many concurrent replies through the real HTTP API and SSE streams.
//!
//! Starts `chorus serve` (release build by default) with the scripted provider on a
//! fresh data dir, creates an account and API key, then for each of N concurrent
//! clients creates a conversation, sends a message and reads the run's SSE stream to
//! `finished`. Reports replies/s, events/s (over the wall time, and while every reply
//! streamed: what compares with the demand), the lag each event arrives after its
//! scheduled time, and the server's peak RSS. The scripted provider emits token k at
//! start + k * interval on a fixed schedule, so for each reply offset_k = arrival_k -
//! k * interval is constant when nothing adds delay; the least-delayed token fixes the
//! schedule's origin and lag_k = offset_k - min(offset) is the latency Chorus added to
//! that event (provider task, journal, SSE, HTTP) beyond its best case. Tokens that
//! reach Chorus together (a run's task that fell behind its schedule) leave as one
//! delta; each token of it counts as arrived with it, so events/s and lag are per
//! token either way.
//!
//! A burst (`--burst`) creates the conversations first, then sends every message at
//! once: the figures that matter there are how long until every reply streams and
//! each reply's first event after its message was sent. `--client-process` runs the
//! clients in a second process (this program again), so the server's process is
//! measured apart from them; `--all` runs SQLite and PostgreSQL, each with the
//! in-process and the Redis journal, and prints one table. `--floor` runs the same
//! clients against a server that does no work at all (`bench/null_server.rs`): the
//! floor this machine and the clients put under every figure. Run `bench --help`.

// The report on stdout is this program's output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use chorus_tests::timing_report;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Connection;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "bench/null_server.rs"]
mod null_server;

const HELP: &str = "\
bench: many concurrent replies through chorus's HTTP API and SSE streams

usage: bench [options]

  --replies N              concurrent replies (default 1000)
  --tokens T               tokens per reply (default 100)
  --tokens-per-second R    each reply's pace (default 20)
  --bin PATH               the chorus binary (default $CHORUS_BIN, else
                           $CARGO_TARGET_DIR/release/chorus)
  --redis URL              use the Redis journal on this server
  --postgres URL           use PostgreSQL: a fresh database is created on this
                           server (the URL's user may create databases) and dropped
  --all                    run the four configurations (SQLite/PostgreSQL x
                           in-process/Redis; needs --redis and --postgres) and print
                           one table
  --burst                  create the conversations first, then send every message
                           at once (time until all stream, first event p50/p99)
  --client-process         run the clients in a second process
  --floor                  the same clients against a server that does no work (no
                           database, journal or provider; same token schedule): what
                           this machine and the clients alone cost
  --timing                 run chorus with [telemetry] timing on and print each
                           phase's p50/p99 as it logged them (timing costs a little)
  -h, --help               this text

Build: cargo build --release -p chorus -p chorus-tests --bin chorus --bin bench
";

#[derive(Clone)]
struct Options {
    replies: usize,
    tokens_per_second: f64,
    tokens: usize,
    bin: String,
    redis: Option<String>,
    postgres: Option<String>,
    all: bool,
    burst: bool,
    client_process: bool,
    timing: bool,
    floor: bool,
    /// Internal: be the server of `--floor` on this port.
    null_server: Option<u16>,
    /// Internal: be the client process of a server at this URL, with this API key.
    client_of: Option<(String, String)>,
}

fn options() -> Result<Option<Options>> {
    let mut o = Options {
        replies: 1000,
        tokens_per_second: 20.0,
        tokens: 100,
        bin: std::env::var("CHORUS_BIN").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            format!("{target}/release/chorus")
        }),
        redis: None,
        postgres: None,
        all: false,
        burst: false,
        client_process: false,
        timing: false,
        floor: false,
        null_server: None,
        client_of: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--replies" => o.replies = value()?.parse().context("--replies")?,
            "--tokens-per-second" => {
                o.tokens_per_second = value()?.parse().context("--tokens-per-second")?
            }
            "--tokens" => o.tokens = value()?.parse().context("--tokens")?,
            "--bin" => o.bin = value()?,
            "--redis" => o.redis = Some(value()?),
            "--postgres" => o.postgres = Some(value()?),
            "--all" => o.all = true,
            "--burst" => o.burst = true,
            "--client-process" => o.client_process = true,
            "--timing" => o.timing = true,
            "--floor" => o.floor = true,
            "--null-server" => o.null_server = Some(value()?.parse().context("--null-server")?),
            "--client-of" => {
                let url = value()?;
                o.client_of = Some((url, value()?));
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
    }
    if o.floor && (o.all || o.redis.is_some() || o.postgres.is_some() || o.timing) {
        bail!("--floor runs no Chorus: it takes none of --all, --redis, --postgres, --timing");
    }
    if o.all && (o.redis.is_none() || o.postgres.is_none()) {
        bail!("--all needs --redis URL and --postgres URL");
    }
    if o.replies == 0 || o.tokens == 0 || o.tokens_per_second <= 0.0 {
        bail!("--replies, --tokens and --tokens-per-second must be positive");
    }
    Ok(Some(o))
}

/// A PostgreSQL database made for one run and dropped after it.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin_url: &str) -> Result<Self> {
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| "cannot connect to --postgres")?;
        let name = format!("chorus_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(admin_url).context("--postgres is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_now(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn chorus(bin: &str, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config").arg(config).args(args);
    c
}

/// Waits until `server` answers `/readyz`.
async fn ready(server: &Server, log: &std::path::Path) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server did not become ready; see {}", log.display())
}

/// `--floor`'s server: this program again, with `--null-server` (a process of its
/// own, as Chorus's is).
async fn start_null(o: &Options, dir: &std::path::Path) -> Result<(Server, String)> {
    let port = free_port()?;
    let log = dir.join("server.log");
    let child = Command::new(std::env::current_exe()?)
        .arg("--null-server")
        .arg(port.to_string())
        .arg("--tokens")
        .arg(o.tokens.to_string())
        .arg("--tokens-per-second")
        .arg(o.tokens_per_second.to_string())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    ready(&server, &log).await?;
    Ok((server, "no-key".into()))
}

async fn start(o: &Options, dir: &std::path::Path) -> Result<(Server, String)> {
    let port = free_port()?;
    let script: Vec<String> = (0..o.tokens).map(|i| format!("word{i} ")).collect();
    let mut config = format!(
        "data_dir = {dir:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\ninstance_id = \"bench\"\n\
         max_streams_per_account = {}\n\
         [[providers]]\nid = \"scripted\"\nkind = \"scripted\"\nmodels = [\"demo\"]\n\
         tokens_per_second = {}\ntext = {:?}\n\
         [limits]\nmessages_per_window = 0\nmax_concurrent_runs = 0\n",
        // Every client is the one bench account: its streams may not be capped.
        o.replies.max(1),
        o.tokens_per_second,
        script.concat()
    );
    if let Some(redis) = &o.redis {
        config.push_str(&format!(
            "[journal]\nredis_url = {redis:?}\nkey_prefix = \"bench:{port}:\"\n"
        ));
    }
    if let Some(pg) = &o.postgres {
        config.push_str(&format!("[database]\nurl = {pg:?}\nmax_connections = 32\n"));
    }
    if o.timing {
        config.push_str(timing_report::CONFIG);
    }
    let config_path = dir.join("chorus.toml");
    std::fs::write(&config_path, config)?;
    let mut create = chorus(
        &o.bin,
        &config_path,
        &["user", "create", "bench", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .with_context(|| {
        format!(
            "cannot run {} (build it: cargo build --release -p chorus)",
            o.bin
        )
    })?;
    create
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"bench-password\n")?;
    if !create.wait()?.success() {
        bail!("user create failed");
    }
    let key = chorus(&o.bin, &config_path, &["apikey", "create", "bench"]).output()?;
    let key = String::from_utf8(key.stdout)?.trim().to_string();
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = chorus(&o.bin, &config_path, &["serve"])
        .env("CHORUS_LOG", timing_report::log_filter(o.timing))
        .stderr(log)
        .spawn()?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    ready(&server, &dir.join("server.log")).await?;
    Ok((server, key))
}

struct ReplyStats {
    events: usize,
    /// When the reply's message was sent, and when its stream opened.
    asked: Instant,
    opened: Instant,
    /// When its first text arrived.
    first: Option<Instant>,
    /// Each token's arrival and lag.
    lags_us: Vec<(Instant, u64)>,
}

async fn new_conversation(client: &reqwest::Client, url: &str, auth: &str) -> Result<String> {
    let conv: Value = client
        .post(format!("{url}/api/conversations"))
        .header("authorization", auth)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(conv["id"].as_str().context("conversation id")?.to_string())
}

/// One reply: a conversation (unless given one), a message, its run's SSE stream to
/// `finished`. `go` holds a burst's messages until all conversations exist.
async fn one_reply(
    client: reqwest::Client,
    url: String,
    key: String,
    interval: Duration,
    conversation: Option<String>,
    go: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<ReplyStats> {
    let auth = format!("Bearer {key}");
    let conv_id = match conversation {
        Some(id) => id,
        None => new_conversation(&client, &url, &auth).await?,
    };
    if let Some(mut go) = go {
        go.wait_for(|go| *go).await?;
    }
    let asked = Instant::now();
    let sent: Value = client
        .post(format!("{url}/api/conversations/{conv_id}/messages"))
        .header("authorization", &auth)
        .json(&json!({"content": "benchmark"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let run_id = sent["run_id"].as_str().context("run id")?;
    let response = client
        .get(format!("{url}/api/runs/{run_id}/events"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?;
    let opened = Instant::now();
    let mut stream = response.bytes_stream().eventsource();
    let mut events = 0;
    let mut arrivals: Vec<Instant> = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event?;
        match event.event.as_str() {
            // Chorus joins tokens that arrived together into one delta: each of its
            // tokens (`wordK `) arrived now, and counts as the event it was scheduled as.
            "delta" => {
                let now = Instant::now();
                let tokens = event.data.matches("word").count().max(1);
                events += tokens;
                arrivals.extend(std::iter::repeat_n(now, tokens));
            }
            "finished" => {
                events += 1;
                let data: Value = serde_json::from_str(&event.data)?;
                if data["status"] != "complete" {
                    bail!("run ended {}", data["status"]);
                }
                let lags = lags_us(&arrivals, interval);
                return Ok(ReplyStats {
                    events,
                    asked,
                    opened,
                    first: arrivals.first().copied(),
                    lags_us: arrivals.into_iter().zip(lags).collect(),
                });
            }
            _ => events += 1,
        }
    }
    bail!("stream ended before finished")
}

/// Each token's delay beyond the reply's least-delayed token, in microseconds.
fn lags_us(arrivals: &[Instant], interval: Duration) -> Vec<u64> {
    let Some(&origin) = arrivals.first() else {
        return Vec::new();
    };
    // Offsets relative to the first arrival, signed: arrival_k - origin - k * interval.
    let offsets: Vec<i128> = arrivals
        .iter()
        .enumerate()
        .map(|(k, &t)| (t - origin).as_micros() as i128 - (interval * k as u32).as_micros() as i128)
        .collect();
    let best = offsets.iter().copied().min().unwrap_or(0);
    offsets.iter().map(|&o| (o - best) as u64).collect()
}

/// CPU time the process has used (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis: utime and stime are the
    // 12th and 13th of them, in clock ticks (every thread's).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 per second for user space.
    Some(Duration::from_millis(ticks * 10))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50, p99 and max of some microsecond samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Spread {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    samples: usize,
}

impl Spread {
    fn of(mut us: Vec<u64>) -> Self {
        us.sort_unstable();
        Self {
            p50_ms: percentile(&us, 0.50) as f64 / 1000.0,
            p99_ms: percentile(&us, 0.99) as f64 / 1000.0,
            max_ms: us.last().copied().unwrap_or(0) as f64 / 1000.0,
            samples: us.len(),
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_ms, self.p99_ms, self.max_ms, self.samples
        )
    }
}

/// What the clients measured.
#[derive(Debug, Serialize, Deserialize)]
struct ClientReport {
    replies: usize,
    failures: usize,
    first_failures: Vec<String>,
    events: usize,
    elapsed_s: f64,
    /// Until every reply streamed, from the first message sent.
    ramp_s: f64,
    lag_all: Spread,
    lag_steady: Spread,
    /// Tokens a second that arrived while every reply was streaming (from the last
    /// reply's first text to the first reply's last token), when that lasted 0.5 s or
    /// more: what the demand (replies × tokens a second) is to be compared with.
    #[serde(default)]
    steady_events_per_s: Option<f64>,
    /// From a reply's message sent to its first text.
    first_event: Spread,
    /// CPU the clients' process used meanwhile, in seconds.
    cpu_s: f64,
}

/// Runs the replies against a server and measures them.
async fn clients(o: &Options, url: &str, key: &str) -> Result<ClientReport> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.replies)
        .build()?;
    let cpu_before = cpu_time(std::process::id()).unwrap_or_default();
    let interval = Duration::from_secs_f64(1.0 / o.tokens_per_second);
    // A burst: the conversations first (not measured), then every message at once.
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut conversations: Vec<Option<String>> = vec![None; o.replies];
    if o.burst {
        let auth = format!("Bearer {key}");
        let made = futures::stream::iter(0..o.replies)
            .map(|_| new_conversation(&client, url, &auth))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for (slot, id) in conversations.iter_mut().zip(made) {
            *slot = Some(id?);
        }
    }
    let tasks: Vec<_> = conversations
        .into_iter()
        .map(|conversation| {
            tokio::spawn(one_reply(
                client.clone(),
                url.to_string(),
                key.to_string(),
                interval,
                conversation,
                o.burst.then(|| go_rx.clone()),
            ))
        })
        .collect();
    let started = Instant::now();
    go_tx.send_replace(true);
    let mut events = 0usize;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut first_event_us = Vec::new();
    let mut last_opened = started;
    // When the first reply to end had its last token.
    let mut first_done: Option<Instant> = None;
    let mut failures = 0usize;
    let mut first_failures = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(stats) => {
                events += stats.events;
                last_opened = last_opened.max(stats.first.unwrap_or(stats.opened));
                if let Some(first) = stats.first {
                    first_event_us.push((first - stats.asked).as_micros() as u64);
                }
                if let Some(&(last, _)) = stats.lags_us.last() {
                    first_done = Some(first_done.map_or(last, |done| done.min(last)));
                }
                samples.extend(stats.lags_us);
            }
            Err(e) => {
                failures += 1;
                if first_failures.len() < 3 {
                    first_failures.push(format!("{e:#}"));
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // Steady state: once every reply is streaming (the ramp of requests that create
    // conversations and send messages is over).
    let lags: Vec<u64> = samples.iter().map(|&(_, lag)| lag).collect();
    let steady: Vec<u64> = samples
        .iter()
        .filter(|&&(at, _)| at > last_opened)
        .map(|&(_, lag)| lag)
        .collect();
    let steady_events_per_s = first_done
        .map(|done| done.saturating_duration_since(last_opened))
        .filter(|all_streaming| *all_streaming >= Duration::from_millis(500))
        .map(|all_streaming| {
            let end = last_opened + all_streaming;
            let arrived = samples
                .iter()
                .filter(|&&(at, _)| at > last_opened && at <= end)
                .count();
            arrived as f64 / all_streaming.as_secs_f64()
        });
    Ok(ClientReport {
        replies: o.replies,
        failures,
        first_failures,
        events,
        elapsed_s: elapsed.as_secs_f64(),
        ramp_s: (last_opened - started).as_secs_f64(),
        lag_all: Spread::of(lags),
        lag_steady: Spread::of(steady),
        steady_events_per_s,
        first_event: Spread::of(first_event_us),
        cpu_s: cpu_time(std::process::id())
            .unwrap_or_default()
            .saturating_sub(cpu_before)
            .as_secs_f64(),
    })
}

/// The clients in a second process: this program with `--client-of`, whose stdout is
/// its report as JSON.
async fn clients_in_process(o: &Options, url: &str, key: &str) -> Result<ClientReport> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("--client-of")
        .arg(url)
        .arg(key)
        .arg("--replies")
        .arg(o.replies.to_string())
        .arg("--tokens")
        .arg(o.tokens.to_string())
        .arg("--tokens-per-second")
        .arg(o.tokens_per_second.to_string());
    if o.burst {
        cmd.arg("--burst");
    }
    let out = cmd.stderr(Stdio::inherit()).output().await?;
    if !out.status.success() {
        bail!("the client process failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the client process's report")
}

/// One configuration's figures.
struct Report {
    name: String,
    clients: ClientReport,
    idle_rss_mib: u64,
    peak_rss_mib: u64,
    /// CPU the server used while the clients ran (conversations included).
    server_cpu: Duration,
}

async fn run_config(o: &Options, redis: Option<&str>, postgres: Option<&str>) -> Result<Report> {
    let name = if o.floor {
        "no server work (floor)".to_string()
    } else {
        format!(
            "{} + {}",
            if postgres.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            if redis.is_some() {
                "Redis journal"
            } else {
                "in-process journal"
            }
        )
    };
    let database = match postgres {
        Some(admin) => Some(BenchDatabase::create(admin).await?),
        None => None,
    };
    let mut one = o.clone();
    one.redis = redis.map(str::to_string);
    one.postgres = database.as_ref().map(|d| d.url.clone());
    let dir = std::env::temp_dir().join(format!("chorus-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let (server, key) = if o.floor {
            start_null(&one, &dir).await?
        } else {
            start(&one, &dir).await?
        };
        let pid = server.child.id();
        let idle = peak_rss_kib(pid).unwrap_or(0);
        let cpu_before = cpu_time(pid).unwrap_or_default();
        let clients = if o.client_process {
            clients_in_process(&one, &server.url, &key).await?
        } else {
            clients(&one, &server.url, &key).await?
        };
        let peak = peak_rss_kib(pid).unwrap_or(0);
        let server_cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
        drop(server);
        if o.timing {
            let log = std::fs::read_to_string(dir.join("server.log"))?;
            println!(
                "{name}: the server's phases (timing on)\n\n{}",
                timing_report::table(&timing_report::parse(&log))
            );
        }
        Ok::<_, anyhow::Error>(Report {
            name: name.clone(),
            clients,
            idle_rss_mib: idle / 1024,
            peak_rss_mib: peak / 1024,
            server_cpu,
        })
    }
    .await;
    if let Some(db) = database {
        db.drop_now().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn print_report(o: &Options, r: &Report) {
    let c = &r.clients;
    println!("configuration:     {}", r.name);
    println!(
        "replies:           {} ({} failed){}",
        c.replies,
        c.failures,
        if o.burst { ", sent as one burst" } else { "" }
    );
    for failure in &c.first_failures {
        println!("  reply failed:    {failure}");
    }
    println!(
        "reply length:      {} tokens at {} tokens/s (~{:.1} s each)",
        o.tokens,
        o.tokens_per_second,
        o.tokens as f64 / o.tokens_per_second
    );
    println!("wall time:         {:.2} s", c.elapsed_s);
    println!(
        "replies/s:         {:.1}",
        (c.replies - c.failures) as f64 / c.elapsed_s
    );
    println!(
        "events/s:          {:.0} over the wall time; {} while every reply streamed ({:.0} demanded)",
        c.events as f64 / c.elapsed_s,
        steady_rate(c),
        o.replies as f64 * o.tokens_per_second
    );
    println!("event lag (all):   {}", c.lag_all.line());
    println!(
        "ramp:              all replies streaming after {:.2} s",
        c.ramp_s
    );
    println!("steady-state lag:  {}", c.lag_steady.line());
    println!("first event:       {}", c.first_event.line());
    println!(
        "server RSS:        idle {} MiB, peak {} MiB",
        r.idle_rss_mib, r.peak_rss_mib
    );
    println!(
        "server CPU:        {:.2} s ({:.2} ms per reply, its conversation included)",
        r.server_cpu.as_secs_f64(),
        r.server_cpu.as_secs_f64() * 1000.0 / c.replies.max(1) as f64
    );
    println!(
        "clients' CPU:      {:.2} s{}",
        c.cpu_s,
        if o.client_process {
            " (their own process)"
        } else {
            " (this process, beside the server)"
        }
    );
}

/// The tokens a second delivered while every reply streamed, or why there is none.
fn steady_rate(c: &ClientReport) -> String {
    c.steady_events_per_s.map_or_else(
        || "— (the ramp outlasted the first reply)".to_string(),
        |rate| format!("{rate:.0}"),
    )
}

fn print_table(o: &Options, reports: &[Report]) {
    println!(
        "\n{} concurrent replies{}, {} tokens at {} tokens/s ({:.0} events/s demanded)\n",
        o.replies,
        if o.burst { " sent as one burst" } else { "" },
        o.tokens,
        o.tokens_per_second,
        o.replies as f64 * o.tokens_per_second
    );
    println!(
        "| configuration | events/s delivered | events/s while every reply streamed | steady-state added lag p50 / p99 | all replies streaming after | first event p50 / p99 | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in reports {
        let c = &r.clients;
        println!(
            "| {} | {:.0} | {} | {:.2} / {:.2} ms | {:.2} s | {:.1} / {:.1} ms | {} MiB |",
            r.name,
            c.events as f64 / c.elapsed_s,
            steady_rate(c),
            c.lag_steady.p50_ms,
            c.lag_steady.p99_ms,
            c.ramp_s,
            c.first_event.p50_ms,
            c.first_event.p99_ms,
            r.peak_rss_mib
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let Some(o) = options()? else {
        return Ok(());
    };
    if let Some(port) = o.null_server {
        return null_server::serve(
            port,
            o.tokens,
            Duration::from_secs_f64(1.0 / o.tokens_per_second),
        )
        .await;
    }
    if let Some((url, key)) = &o.client_of {
        let report = clients(&o, url, key).await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let configs: Vec<(Option<&str>, Option<&str>)> = if o.all {
        vec![
            (None, None),
            (o.redis.as_deref(), None),
            (None, o.postgres.as_deref()),
            (o.redis.as_deref(), o.postgres.as_deref()),
        ]
    } else {
        vec![(o.redis.as_deref(), o.postgres.as_deref())]
    };
    let mut reports = Vec::new();
    let mut failures = 0;
    for (redis, postgres) in configs {
        let report = run_config(&o, redis, postgres).await?;
        print_report(&o, &report);
        println!();
        failures += report.clients.failures;
        reports.push(report);
    }
    if o.all {
        print_table(&o, &reports);
    }
    if failures > 0 {
        bail!("{failures} replies failed");
    }
    Ok(())
}
