//! Benchmark of the OpenAI-compatible gateway against a direct call and LiteLLM.
//!
//! In one process: a local OpenAI-compatible upstream (axum on loopback) that streams
//! `--chunks` chunks and a usage chunk (as fast as it can, or one every
//! `--chunk-interval-us` microseconds, like a model generating); `chorus serve` (release
//! build by default, SQLite, in-process journal, no prices and no message or
//! concurrency limits) with that upstream as an
//! `openai` provider; and, with `--litellm`, LiteLLM's proxy (`scripts/provision/
//! 20-litellm.sh`) pointed at the same upstream. The same load — `--concurrency`
//! clients sending `--requests` streaming chat completions in total — goes direct to
//! the upstream, through Chorus's `/v1/chat/completions`, and through LiteLLM, and
//! the report gives replies/s and first-chunk and total latency p50/p99 for each, and
//! under each the two ends of a request's time the upstream did not spend: from the
//! client's send until the upstream had the request, and from the upstream's last
//! chunk until the client read the end (each request names itself in its message;
//! the upstream logs when it received it and when it wrote its end).
//! `--rate R` adds the non-streaming mode: requests sent at a fixed R per second (open
//! loop) for `--seconds`, direct and through Chorus, with the latency Chorus adds.
//!
//! With the instant upstream, "of direct" is Chorus's whole per-request cost against
//! almost nothing; with a paced one (`--chunk-interval-us 220`: 200 chunks in about
//! 44 ms, the direct total p50 of issue 17's figures) it is what a client of a real
//! model would see.
//!
//! `--timing` runs Chorus with `[telemetry] timing` on and ends the report with each
//! phase's p50 / p99 as the server logged them (its timing costs a little itself).
//!
//! Usage: gateway_bench [--requests N] [--concurrency C] [--chunks K]
//!        [--chunk-interval-us U] [--rate R] [--seconds S] [--litellm] [--timing]
//!        [--bin PATH]

// The report on stdout is this program's output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use chorus_tests::timing_report;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The LiteLLM proxy's master key (it refuses to start without one).
const LITELLM_KEY: &str = "sk-bench-master-0123456789abcdef0123456789abcdef";

struct Options {
    requests: usize,
    concurrency: usize,
    chunks: usize,
    /// Time between two chunks of the upstream's stream (zero: all at once). A
    /// non-streaming answer waits as long as the whole stream would take.
    chunk_interval: Duration,
    rate: Option<f64>,
    seconds: f64,
    litellm: bool,
    /// Run Chorus with `[telemetry] timing` on and report its phases.
    timing: bool,
    bin: String,
}

fn options() -> Result<Options> {
    let mut o = Options {
        requests: 2000,
        concurrency: 50,
        chunks: 200,
        chunk_interval: Duration::ZERO,
        rate: None,
        seconds: 10.0,
        litellm: false,
        timing: false,
        bin: std::env::var("CHORUS_BIN").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            format!("{target}/release/chorus")
        }),
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
            "--requests" => o.requests = value()?.parse()?,
            "--concurrency" => o.concurrency = value()?.parse()?,
            "--chunks" => o.chunks = value()?.parse()?,
            "--chunk-interval-us" => o.chunk_interval = Duration::from_micros(value()?.parse()?),
            "--rate" => o.rate = Some(value()?.parse()?),
            "--seconds" => o.seconds = value()?.parse()?,
            "--litellm" => o.litellm = true,
            "--timing" => o.timing = true,
            "--bin" => o.bin = value()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
}

/// The upstream's streamed body, one piece per event (built once: serving costs a
/// copy): the chunks, then the finish chunk, the usage chunk and `[DONE]` together.
fn upstream_frames(chunks: usize) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(chunks + 1);
    for i in 0..chunks {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": "w0 "})
        } else {
            json!({"content": format!("w{i} ")})
        };
        let chunk = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
            "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
        frames.push(Bytes::from(format!("data: {chunk}\n\n")));
    }
    let end = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
        "model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
        "model": "bench", "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}});
    frames.push(Bytes::from(format!(
        "data: {end}\n\ndata: {usage}\n\ndata: [DONE]\n\n"
    )));
    frames
}

/// The non-streaming answer of the upstream.
fn upstream_json(chunks: usize) -> Bytes {
    let text: String = (0..chunks).map(|i| format!("w{i} ")).collect();
    Bytes::from(
        json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}})
        .to_string(),
    )
}

/// When the upstream received each streamed request and wrote its last piece, by
/// the request's last message (each client request names itself there), so that a
/// client's timeline splits into before the upstream, the upstream, and after it.
#[derive(Clone, Default)]
struct UpstreamLog(Arc<std::sync::Mutex<HashMap<String, Served>>>);

/// When the upstream received a request, and wrote its end once it did.
type Served = (Instant, Option<Instant>);

impl UpstreamLog {
    fn received(&self, request: &str) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.insert(request.to_string(), (Instant::now(), None));
    }

    fn ended(&self, request: &str) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, end)) = log.get_mut(request) {
            *end = Some(Instant::now());
        }
    }

    fn get(&self, request: &str) -> Option<(Instant, Instant)> {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.get(request)
            .and_then(|&(start, end)| Some((start, end?)))
    }
}

/// Starts the upstream; returns its base URL (`http://127.0.0.1:P/v1`). Paced
/// (`interval` > 0), chunk k leaves at start + k x interval on a fixed schedule (the
/// timer's millisecond granularity sends the chunks due in one tick together).
async fn start_upstream(chunks: usize, interval: Duration, log: UpstreamLog) -> Result<String> {
    let frames: Arc<[Bytes]> = upstream_frames(chunks).into();
    let whole_stream = Bytes::from(frames.concat());
    let whole = upstream_json(chunks);
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| {
            let (frames, whole_stream, whole, log) = (
                frames.clone(),
                whole_stream.clone(),
                whole.clone(),
                log.clone(),
            );
            async move {
                let request = serde_json::from_slice::<serde_json::Value>(&body).ok();
                let streaming = request.as_ref().is_some_and(|v| v["stream"] == true);
                let name = request
                    .as_ref()
                    .and_then(|v| {
                        v["messages"].as_array()?.last()?["content"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                if streaming {
                    log.received(&name);
                }
                let started = tokio::time::Instant::now();
                let (kind, body) = if !streaming {
                    tokio::time::sleep_until(started + interval * chunks as u32).await;
                    ("application/json", Body::from(whole))
                } else if interval.is_zero() {
                    log.ended(&name);
                    ("text/event-stream", Body::from(whole_stream))
                } else {
                    // Every frame due when the task wakes goes out at once: a timer
                    // per frame would add a timer tick to each, not keep to the schedule.
                    let paced = futures::stream::unfold(0usize, move |k| {
                        let (frames, log, name) = (frames.clone(), log.clone(), name.clone());
                        async move {
                            if k == frames.len() {
                                return None;
                            }
                            let due = started + interval * k as u32;
                            if tokio::time::Instant::now() < due {
                                tokio::time::sleep_until(due).await;
                            }
                            let now = tokio::time::Instant::now();
                            let mut end = k + 1;
                            while end < frames.len() && started + interval * end as u32 <= now {
                                end += 1;
                            }
                            let piece = Bytes::from(frames[k..end].concat());
                            if end == frames.len() {
                                log.ended(&name);
                            }
                            Some((Ok::<_, std::convert::Infallible>(piece), end))
                        }
                    });
                    ("text/event-stream", Body::from_stream(paced))
                };
                Response::builder()
                    .header("content-type", kind)
                    .body(body)
                    .unwrap_or_default()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // As a model API's servers do: with Nagle's algorithm on, each paced write would
    // wait for the acknowledgement of the one before (delayed by up to 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/v1"))
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

fn chorus(bin: &str, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config").arg(config).args(args);
    c
}

/// Starts Chorus with the upstream as provider `up`; returns it and an API key.
async fn start_chorus(
    o: &Options,
    dir: &std::path::Path,
    upstream: &str,
) -> Result<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        "data_dir = {dir:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\ninstance_id = \"bench\"\n\
         [[providers]]\nid = \"up\"\nkind = \"openai\"\nbase_url = {upstream:?}\napi_key = \"sk-bench\"\n\
         models = [\"bench\"]\n\
         [limits]\nmessages_per_window = 0\nmax_concurrent_runs = 0\n{}",
        if o.timing { timing_report::CONFIG } else { "" }
    );
    let path = dir.join("chorus.toml");
    std::fs::write(&path, config)?;
    let mut create = chorus(
        &o.bin,
        &path,
        &["user", "create", "bench", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .with_context(|| format!("cannot run {} (cargo build --release -p chorus)", o.bin))?;
    create
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"bench-password\n")?;
    if !create.wait()?.success() {
        bail!("user create failed");
    }
    let key = chorus(&o.bin, &path, &["apikey", "create", "bench"]).output()?;
    let key = String::from_utf8(key.stdout)?.trim().to_string();
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = chorus(&o.bin, &path, &["serve"])
        .env("CHORUS_LOG", timing_report::log_filter(o.timing))
        .stderr(log)
        .spawn()?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/v1"),
    };
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((server, key));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "chorus did not become ready; see {}",
        dir.join("server.log").display()
    )
}

/// One target of the load: a base URL ending in `/v1`, a key and a model name.
#[derive(Clone)]
struct Target {
    name: &'static str,
    base: String,
    key: String,
    model: String,
}

/// One streamed reply's timeline: first-chunk and total latency, and the times the
/// upstream received it and wrote its end, after the client sent it and before the
/// client read its end (`None` when the upstream kept no record of it).
struct Streamed {
    first: Duration,
    total: Duration,
    /// Client sent → upstream received; upstream wrote its end → client read the end.
    around_upstream: Option<(Duration, Duration)>,
}

/// Names each request of the run (its message), for the upstream's log.
static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One streamed reply.
async fn one_stream(http: &reqwest::Client, t: &Target, log: &UpstreamLog) -> Result<Streamed> {
    let name = format!(
        "benchmark {}",
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let start = Instant::now();
    let resp = http
        .post(format!("{}/chat/completions", t.base))
        .bearer_auth(&t.key)
        .json(
            &json!({"model": t.model, "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": name}]}),
        )
        .send()
        .await?
        .error_for_status()?;
    let mut body = resp.bytes_stream();
    let mut first = None;
    let mut tail = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        // The first token's text (`w0 `), however each server frames its chunks.
        if first.is_none() && chunk.windows(3).any(|w| w == b"w0 ") {
            first = Some(start.elapsed());
        }
        tail.extend_from_slice(&chunk);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    if !tail.ends_with(b"data: [DONE]\n\n") {
        bail!("{}: the stream did not end with [DONE]", t.name);
    }
    let end = Instant::now();
    Ok(Streamed {
        first: first.unwrap_or_else(|| start.elapsed()),
        total: end - start,
        around_upstream: log.get(&name).map(|(received, ended)| {
            (
                received.saturating_duration_since(start),
                end.saturating_duration_since(ended),
            )
        }),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `concurrency` clients send `requests` streaming completions in total.
async fn closed_loop(o: &Options, t: &Target, log: &UpstreamLog) -> Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..o.concurrency {
        let (http, t, next, n, log) = (
            http.clone(),
            t.clone(),
            next.clone(),
            o.requests,
            log.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                out.push(one_stream(&http, &t, &log).await?);
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut firsts = Vec::new();
    let mut totals = Vec::new();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for c in clients {
        for one in c.await?? {
            firsts.push(one.first);
            totals.push(one.total);
            if let Some((b, a)) = one.around_upstream {
                before.push(b);
                after.push(a);
            }
        }
    }
    let wall = started.elapsed();
    firsts.sort();
    totals.sort();
    before.sort();
    after.sort();
    let rate = totals.len() as f64 / wall.as_secs_f64();
    println!(
        "| {} | {:.0} | {} / {} | {} / {} |",
        t.name,
        rate,
        ms(percentile(&firsts, 0.5)),
        ms(percentile(&firsts, 0.99)),
        ms(percentile(&totals, 0.5)),
        ms(percentile(&totals, 0.99)),
    );
    if !before.is_empty() {
        println!(
            "|   until the upstream had the request; after its last chunk | | {} / {} | {} / {} |",
            ms(percentile(&before, 0.5)),
            ms(percentile(&before, 0.99)),
            ms(percentile(&after, 0.5)),
            ms(percentile(&after, 0.99)),
        );
    }
    Ok(rate)
}

/// Non-streaming requests at a fixed rate for `seconds`; returns sorted latencies.
async fn open_loop(o: &Options, rate: f64, t: &Target) -> Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let n = (rate * o.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (http, t) = (http.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            http.post(format!("{}/chat/completions", t.base))
                .bearer_auth(&t.key)
                .json(&json!({"model": t.model, "messages": [{"role": "user", "content": "benchmark"}]}))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok::<_, anyhow::Error>(began.elapsed())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await??);
    }
    out.sort();
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let log = UpstreamLog::default();
    let upstream = start_upstream(o.chunks, o.chunk_interval, log.clone()).await?;
    let dir = tempfile::tempdir()?;
    let (server, key) = start_chorus(&o, dir.path(), &upstream).await?;
    let mut targets = vec![
        Target {
            name: "direct",
            base: upstream.clone(),
            key: "sk-bench".into(),
            model: "bench".into(),
        },
        Target {
            name: "Chorus /v1/chat/completions",
            base: server.url.clone(),
            key,
            model: "up/bench".into(),
        },
    ];
    let _litellm = if o.litellm {
        let yaml = format!(
            "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n      \
             api_base: {upstream}\n      api_key: sk-bench\n\
             general_settings:\n  master_key: {LITELLM_KEY}\n"
        );
        let proxy = chorus_tests::litellm::LiteLlm::start(&yaml).await?;
        targets.push(Target {
            name: "LiteLLM proxy",
            base: format!("{}/v1", proxy.url()),
            key: LITELLM_KEY.into(),
            model: "bench".into(),
        });
        Some(proxy)
    } else {
        None
    };
    let pace = if o.chunk_interval.is_zero() {
        "all at once".to_string()
    } else {
        format!(
            "one every {} µs ({} ms a stream)",
            o.chunk_interval.as_micros(),
            (o.chunk_interval * o.chunks as u32).as_millis()
        )
    };
    println!(
        "{} streaming requests, {} concurrent clients, {} chunks each, {pace}\n",
        o.requests, o.concurrency, o.chunks
    );
    println!("| target | replies/s | first chunk p50 / p99 (ms) | total p50 / p99 (ms) |");
    println!("|---|---|---|---|");
    let mut direct = None;
    for t in &targets {
        // A short warm-up (connections, first allocations) outside the figures.
        for _ in 0..5 {
            one_stream(&reqwest::Client::new(), t, &log).await?;
        }
        let rate = closed_loop(&o, t, &log).await?;
        match direct {
            None => direct = Some(rate),
            Some(d) => println!("|   (of direct) | {:.0} % | | |", 100.0 * rate / d),
        }
    }
    if let Some(rate) = o.rate {
        println!(
            "\nnon-streaming, {rate} requests/s for {} s (open loop)\n",
            o.seconds
        );
        println!("| target | p50 (ms) | p99 (ms) |");
        println!("|---|---|---|");
        let mut base: Option<Vec<Duration>> = None;
        for t in &targets[..2] {
            let lat = open_loop(&o, rate, t).await?;
            println!(
                "| {} | {} | {} |",
                t.name,
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99))
            );
            if let Some(b) = &base {
                let added = |p| percentile(&lat, p).saturating_sub(percentile(b, p));
                println!(
                    "| added by Chorus | {} | {} |",
                    ms(added(0.5)),
                    ms(added(0.99))
                );
            }
            base = Some(lat);
        }
    }
    if o.timing {
        let log = std::fs::read_to_string(dir.path().join("server.log"))?;
        println!(
            "\nChorus's phases (timing on), all requests above\n\n{}",
            timing_report::table(&timing_report::parse(&log))
        );
    }
    drop(server);
    Ok(())
}
