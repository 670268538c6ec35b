//! Benchmark of the admin console's aggregates as data grows: fills a fresh database
//! with N accounts (each with a Discord identity) and M ledger rows of run usage over
//! the last 30 days (with the rollup of those runs the console charts, and three
//! instances' provider figures), starts `chorus serve` on it, and times the console's
//! lists, the account page, the overview and the providers page over HTTP (an admin's API key), each request repeated; reports the
//! median and the slowest. The figures are wall time seen by the client on loopback,
//! so they include HTTP and JSON or HTML rendering.
//!
//! Usage: admin_bench [--accounts N] [--ledger M] [--repeat K] [--bin PATH] [--postgres URL]

// The report on stdout is this program's output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    accounts: usize,
    ledger: usize,
    repeat: usize,
    bin: String,
    postgres: Option<String>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        accounts: 100_000,
        ledger: 1_000_000,
        repeat: 20,
        bin: std::env::var("CHORUS_BIN").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            format!("{target}/release/chorus")
        }),
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
            "--accounts" => o.accounts = value()?.parse()?,
            "--ledger" => o.ledger = value()?.parse()?,
            "--repeat" => o.repeat = value()?.parse()?,
            "--bin" => o.bin = value()?,
            "--postgres" => o.postgres = Some(value()?),
            other => bail!("unknown option {other}"),
        }
    }
    if o.accounts == 0 {
        bail!("--accounts must be at least 1");
    }
    Ok(o)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chorus(bin: &str, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config").arg(config).args(args);
    c
}

const DAY_MS: i64 = 86_400_000;
const BATCH: usize = 500;

/// Writes the accounts, identities and ledger rows straight into the database (the
/// balance of each account is the sum of its rows, as Chorus keeps it).
async fn fill(url: &str, o: &Options, now: i64) -> Result<()> {
    install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let per_account = o.ledger / o.accounts;
    let extra = o.ledger % o.accounts;
    let rows_of = |i: usize| per_account + usize::from(i < extra);
    let amount = |i: usize, k: usize| -> i64 { -(((i * 31 + k * 17) % 5000) as i64 + 1) };
    let mut tx = pool.begin().await?;
    for start in (0..o.accounts).step_by(BATCH) {
        let end = (start + BATCH).min(o.accounts);
        let mut accounts = String::from(
            "INSERT INTO accounts (id, name, role, status, created_at, balance, spent, last_active_at) VALUES ",
        );
        let mut identities = String::from(
            "INSERT INTO identities (id, platform, external_id, account_id, label, created_at) VALUES ",
        );
        for i in start..end {
            let sum: i64 = (0..rows_of(i)).map(|k| amount(i, k)).sum();
            let sep = if i == start { "" } else { "," };
            let active = now - (i as i64 % 30) * DAY_MS;
            accounts.push_str(&format!(
                "{sep}('00000000-0000-7000-8000-{i:012}', 'user-{i}', 'user', 'active', {now}, {sum}, {}, {active})",
                -sum
            ));
            identities.push_str(&format!(
                "{sep}('ident-{i:08}', 'discord', '{}', '00000000-0000-7000-8000-{i:012}', 'user{i}#0001', {now})",
                800_000_000_000_000_000u64 + i as u64
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(accounts))
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(identities))
            .execute(&mut *tx)
            .await?;
    }
    let mut rows = Vec::with_capacity(BATCH);
    let mut n = 0usize;
    for i in 0..o.accounts {
        for k in 0..rows_of(i) {
            let at = now - ((n * 7919) % (30 * DAY_MS as usize / 1000)) as i64 * 1000;
            rows.push(format!(
                "('led-{n:09}', '00000000-0000-7000-8000-{i:012}', {}, 'run_usage', 'scripted/demo', 100, 20, 0, {at})",
                amount(i, k)
            ));
            n += 1;
            if rows.len() == BATCH {
                insert_ledger(&mut tx, &mut rows).await?;
            }
        }
    }
    if !rows.is_empty() {
        insert_ledger(&mut tx, &mut rows).await?;
    }
    // The console's rollup, as the transactions that ended those runs would have
    // written it (minute and hour buckets, spread over 8 shards), and three instances'
    // provider figures.
    sqlx::query(
        "INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         SELECT s.span, (l.created_at / s.span) * s.span, l.created_at % 8, COUNT(*), 0, \
         SUM(l.prompt_tokens), SUM(l.completion_tokens), SUM(-l.amount) \
         FROM ledger l CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) s \
         WHERE l.reason = 'run_usage' \
         GROUP BY s.span, (l.created_at / s.span) * s.span, l.created_at % 8",
    )
    .execute(&mut *tx)
    .await?;
    for instance in ["bench-a", "bench-b", "bench-c"] {
        sqlx::query(
            "INSERT INTO provider_stats (instance_id, provider, attempts, failures, first_token_p50_ms, \
             first_token_p95_ms, last_error, last_error_at, updated_at) \
             VALUES ($1, 'scripted', 100, 3, 180, 900, 'HTTP 529 overloaded', $2, $2)",
        )
        .bind(instance)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // What autovacuum (PostgreSQL) would have done by the time anyone looks.
    let analyze = if url.starts_with("sqlite") {
        "ANALYZE"
    } else {
        "VACUUM ANALYZE"
    };
    sqlx::query(analyze).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn insert_ledger(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rows: &mut Vec<String>,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO ledger (id, account_id, amount, reason, model, prompt_tokens, completion_tokens, \
         cached_prompt_tokens, created_at) VALUES {}",
        rows.join(",")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await?;
    rows.clear();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = format!(
        "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.path()
    );
    let url = match &o.postgres {
        Some(pg) => {
            config.push_str(&format!("[database]\nurl = {pg:?}\n"));
            pg.clone()
        }
        None => format!("sqlite://{}/chorus.db", dir.path().display()),
    };
    let config_path = dir.path().join("chorus.toml");
    std::fs::write(&config_path, config)?;
    // Creating the admin migrates the database.
    let mut create = chorus(
        &o.bin,
        &config_path,
        &["user", "create", "root", "--admin", "--password-stdin"],
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
    let key = chorus(&o.bin, &config_path, &["apikey", "create", "root"]).output()?;
    let key = String::from_utf8(key.stdout)?.trim().to_string();

    let now = chorus_now();
    let filling = Instant::now();
    fill(&url, &o, now).await?;
    println!(
        "filled {} accounts and {} ledger rows in {:.1} s",
        o.accounts,
        o.ledger,
        filling.elapsed().as_secs_f64()
    );

    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let _server = Server(
        chorus(&o.bin, &config_path, &["serve"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let middle = o.accounts / 2;
    let cases = [
        (
            "accounts by spend",
            "/api/admin/accounts?sort=spend".to_string(),
        ),
        (
            "accounts by last activity",
            "/api/admin/accounts?sort=last_active".to_string(),
        ),
        (
            "accounts by name, page 100",
            "/api/admin/accounts?sort=name&page=100".to_string(),
        ),
        (
            "account by Discord id",
            format!(
                "/api/admin/accounts?q={}",
                800_000_000_000_000_000u64 + middle as u64
            ),
        ),
        (
            "accounts by name prefix",
            format!("/api/admin/accounts?q=user-{middle}"),
        ),
        (
            "account page (JSON)",
            format!("/api/admin/accounts/00000000-0000-7000-8000-{middle:012}"),
        ),
        (
            "overview with its charts (JSON)",
            "/api/admin/overview".to_string(),
        ),
        (
            "providers and models (JSON)",
            "/api/admin/providers".to_string(),
        ),
        ("runs, active", "/api/admin/runs?status=active".to_string()),
        ("audit log", "/api/admin/audit".to_string()),
    ];
    println!("| request | median | slowest |\n|---|---|---|");
    for (what, path) in cases {
        let mut times = Vec::with_capacity(o.repeat);
        for _ in 0..o.repeat.max(1) {
            let t = Instant::now();
            let resp = http
                .get(format!("{base}{path}"))
                .bearer_auth(&key)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.text().await?;
            if !status.is_success() {
                bail!("{path} answered {status}: {body}");
            }
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "| {what} | {:.1} ms | {:.1} ms |",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn chorus_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
