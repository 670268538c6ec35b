//! Benchmark: many concurrent replies through the real HTTP API and SSE streams.
//!
//! Starts `chorus serve` (release build by default) with the scripted provider on a
//! fresh data dir, creates an account and API key, then for each of N concurrent
//! clients creates a conversation, sends a message and reads the run's SSE stream to
//! `finished`. Reports replies/s, events/s, the lag each event arrives after its
//! scheduled time, and the server's peak RSS. The scripted provider emits token k at
//! start + k * interval on a fixed schedule, so for each reply offset_k = arrival_k -
//! k * interval is constant when nothing adds delay; the least-delayed token fixes the
//! schedule's origin and lag_k = offset_k - min(offset) is the latency Chorus added to
//! that event (provider task, journal, SSE, HTTP) beyond its best case.
//!
//! Usage: bench [--replies N] [--tokens-per-second R] [--tokens T] [--bin PATH] [--redis URL --postgres URL]

// The report on stdout is this program's output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    replies: usize,
    tokens_per_second: f64,
    tokens: usize,
    bin: String,
    redis: Option<String>,
    postgres: Option<String>,
}

fn options() -> Result<Options> {
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
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--replies" => o.replies = value()?.parse()?,
            "--tokens-per-second" => o.tokens_per_second = value()?.parse()?,
            "--tokens" => o.tokens = value()?.parse()?,
            "--bin" => o.bin = value()?,
            "--redis" => o.redis = Some(value()?),
            "--postgres" => o.postgres = Some(value()?),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
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
        .env("CHORUS_LOG", "warn")
        .stderr(log)
        .spawn()?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((server, key));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "server did not become ready; see {}",
        dir.join("server.log").display()
    )
}

struct ReplyStats {
    events: usize,
    /// When the reply's stream opened.
    opened: Instant,
    /// Each token's arrival and lag.
    lags_us: Vec<(Instant, u64)>,
}

async fn one_reply(
    client: reqwest::Client,
    url: String,
    key: String,
    interval: Duration,
) -> Result<ReplyStats> {
    let auth = format!("Bearer {key}");
    let conv: Value = client
        .post(format!("{url}/api/conversations"))
        .header("authorization", &auth)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let conv_id = conv["id"].as_str().context("conversation id")?;
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
        events += 1;
        match event.event.as_str() {
            "delta" => arrivals.push(Instant::now()),
            "finished" => {
                let data: Value = serde_json::from_str(&event.data)?;
                if data["status"] != "complete" {
                    bail!("run ended {}", data["status"]);
                }
                let lags = lags_us(&arrivals, interval);
                return Ok(ReplyStats {
                    events,
                    opened,
                    lags_us: arrivals.into_iter().zip(lags).collect(),
                });
            }
            _ => {}
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

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let dir = std::env::temp_dir().join(format!("chorus-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (server, key) = start(&o, &dir).await?;
    let pid = server.child.id();
    let idle_rss = peak_rss_kib(pid).unwrap_or(0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.replies)
        .build()?;
    let interval = Duration::from_secs_f64(1.0 / o.tokens_per_second);
    let started = Instant::now();
    let tasks: Vec<_> = (0..o.replies)
        .map(|_| {
            tokio::spawn(one_reply(
                client.clone(),
                server.url.clone(),
                key.clone(),
                interval,
            ))
        })
        .collect();
    let mut events = 0usize;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut last_opened = started;
    let mut failures = 0usize;
    for task in tasks {
        match task.await? {
            Ok(stats) => {
                events += stats.events;
                last_opened = last_opened.max(stats.opened);
                samples.extend(stats.lags_us);
            }
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("reply failed: {e:#}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let peak = peak_rss_kib(pid).unwrap_or(0);
    // Steady state: once every reply is streaming (the ramp of 2 x N requests that
    // create conversations and send messages is over).
    let mut lags: Vec<u64> = samples.iter().map(|&(_, lag)| lag).collect();
    let mut steady: Vec<u64> = samples
        .iter()
        .filter(|&&(at, _)| at > last_opened)
        .map(|&(_, lag)| lag)
        .collect();
    lags.sort_unstable();
    steady.sort_unstable();
    println!("replies:           {} ({} failed)", o.replies, failures);
    println!(
        "reply length:      {} tokens at {} tokens/s (~{:.1} s each)",
        o.tokens,
        o.tokens_per_second,
        o.tokens as f64 / o.tokens_per_second
    );
    println!("wall time:         {:.2} s", elapsed.as_secs_f64());
    println!(
        "replies/s:         {:.1}",
        (o.replies - failures) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "events/s:          {:.0}",
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "event lag (all):   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(&lags, 0.50) as f64 / 1000.0,
        percentile(&lags, 0.99) as f64 / 1000.0,
        lags.last().copied().unwrap_or(0) as f64 / 1000.0,
        lags.len()
    );
    println!(
        "ramp:              all replies streaming after {:.2} s",
        (last_opened - started).as_secs_f64()
    );
    println!(
        "steady-state lag:  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(&steady, 0.50) as f64 / 1000.0,
        percentile(&steady, 0.99) as f64 / 1000.0,
        steady.last().copied().unwrap_or(0) as f64 / 1000.0,
        steady.len()
    );
    println!(
        "server RSS:        idle {} MiB, peak {} MiB",
        idle_rss / 1024,
        peak / 1024
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if failures > 0 {
        bail!("{failures} replies failed");
    }
    Ok(())
}
