//! The ledger under a race, on PostgreSQL: hundreds of concurrent runs of one account
//! through the real core (scripted provider, fast tokens) must never leave its balance
//! different from the sum of its ledger, must each be charged exactly once, and once
//! the balance is exhausted no further run may start: only runs already in flight
//! overdraw, by their actual usage.

use crate::support;

use chorus_core::config::Config;
use chorus_core::quota::Refusal;
use chorus_core::{Core, CoreError};
use futures::future::join_all;
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SENDS: usize = 240;
/// Sends started at once: first, then in each later wave.
const FIRST_WAVE: usize = 200;
const WAVE: usize = 20;
const CONVERSATIONS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_never_break_the_ledger_on_postgres() {
    let (url, name) = support::postgres_database().await;
    let toml = format!(
        r#"
[server]
instance_id = "race"
[database]
url = "{url}"
max_connections = 24
[quota]
enabled = true
[[providers]]
id = "s"
kind = "scripted"
models = ["demo"]
text = "one two three four five six seven eight"
tokens_per_second = 400.0
model_info = {{ demo = {{ prompt_price = 1000.0, completion_price = 2000.0 }} }}
"#
    );
    let config = Config::from_toml(&toml, &BTreeMap::new()).unwrap();
    let core = Core::start(config).await.unwrap();
    let account = core
        .create_account("racer", false, Some("correct horse battery"))
        .await
        .unwrap();
    let root = core.create_account("root", true, None).await.unwrap();
    let admin = core.admin(&root).unwrap();
    core.grant_credits(&admin, "racer", 1.0, Some("race"))
        .await
        .unwrap();
    let mut conversations = Vec::new();
    for _ in 0..CONVERSATIONS {
        conversations.push(
            core.create_conversation(&account, None, None, None)
                .await
                .unwrap()
                .id,
        );
    }

    // Watch the invariant while the race runs: one statement, one snapshot.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let racing = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (pool, racing, id) = (pool.clone(), racing.clone(), account.id.to_string());
        tokio::spawn(async move {
            let mut samples = 0u32;
            while racing.load(Ordering::Relaxed) {
                let row = sqlx::query(
                    "SELECT a.balance, CAST((SELECT COALESCE(SUM(l.amount), 0) FROM ledger l \
                     WHERE l.account_id = a.id) AS BIGINT) AS total FROM accounts a WHERE a.id = $1",
                )
                .bind(&id)
                .fetch_one(&pool)
                .await
                .unwrap();
                let (balance, total): (i64, i64) = (row.get("balance"), row.get("total"));
                assert_eq!(balance, total, "balance differs from the ledger mid-race");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        })
    };

    // 200 sends at once (runs race to start and to charge), then smaller waves a
    // little apart, so that runs finish (and charge) while later sends race for
    // admission; waves go on until the balance has refused one (how many runs fit
    // before the first charge lands depends on the machine's speed).
    let mut accepted = HashSet::new();
    let mut refused = 0;
    let mut sent = 0;
    while sent < SENDS || (refused == 0 && sent < SENDS * 4) {
        let size = if sent == 0 { FIRST_WAVE } else { WAVE };
        let wave = (sent..sent + size).map(|i| {
            let (core, account, conv) = (
                core.clone(),
                account.clone(),
                conversations[i % CONVERSATIONS].clone(),
            );
            async move {
                core.send_message(&account, &conv, &format!("message {i}"), None, None)
                    .await
            }
        });
        for result in join_all(wave).await {
            match result {
                Ok(sent) => {
                    accepted.insert(sent.run_id.to_string());
                }
                Err(CoreError::Refused(
                    Refusal::Exhausted { .. } | Refusal::PromptTooExpensive { .. },
                )) => refused += 1,
                Err(other) => panic!("a send failed for another reason: {other}"),
            }
        }
        sent += size;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !accepted.is_empty() && refused > 0,
        "accepted {} refused {refused}",
        accepted.len()
    );

    // Every run ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM runs WHERE status IN ('queued', 'streaming')")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get("n");
        if active == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{active} runs still active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    racing.store(false, Ordering::Relaxed);
    let samples = watcher.await.unwrap();
    assert!(
        samples > 3,
        "the invariant was sampled {samples} times only"
    );

    // Exactly one charge per accepted run, each run complete.
    let runs = sqlx::query("SELECT id, status, created_at FROM runs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(runs.len(), accepted.len());
    assert!(
        runs.iter()
            .all(|r| r.get::<String, _>("status") == "complete")
    );
    let charges = sqlx::query(
        "SELECT run_id, amount, created_at FROM ledger WHERE reason = 'run_usage' ORDER BY created_at, id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let charged: HashSet<String> = charges.iter().map(|r| r.get("run_id")).collect();
    assert_eq!(charges.len(), accepted.len(), "one ledger row per run");
    assert_eq!(charged, accepted);
    assert!(charges.iter().all(|r| r.get::<i64, _>("amount") < 0));

    // The refusal held: replay the ledger in order; once the balance reached zero, no
    // run started after that moment, and the overdraft is what the runs then in flight
    // used.
    let ledger =
        sqlx::query("SELECT amount, created_at, run_id FROM ledger ORDER BY created_at, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut running = 0i64;
    let mut crossing: Option<(usize, i64)> = None;
    for (i, row) in ledger.iter().enumerate() {
        running += row.get::<i64, _>("amount");
        if running <= 0 && crossing.is_none() && i > 0 {
            crossing = Some((i, row.get("created_at")));
        }
    }
    let store = chorus_store::Store::connect(&url, Some(2)).await.unwrap();
    let balance = store.balance(&account.id).await.unwrap();
    assert_eq!(balance, running, "balance equals the sum of the ledger");
    assert_eq!(balance, store.ledger_sum(&account.id).await.unwrap());
    store.close().await;
    let (index, crossed_at) = crossing.expect("the race exhausts the balance");
    let late: Vec<i64> = runs
        .iter()
        .map(|r| r.get::<i64, _>("created_at"))
        .filter(|t| *t > crossed_at)
        .collect();
    assert!(
        late.is_empty(),
        "{} runs started after the balance was exhausted",
        late.len()
    );
    let in_flight: i64 = ledger[index..]
        .iter()
        .map(|r| -r.get::<i64, _>("amount"))
        .sum();
    assert!(
        balance <= 0 && -balance <= in_flight,
        "overdraft {} beyond in-flight usage {in_flight}",
        -balance
    );

    // And now every new run is refused, with a message that says why.
    let err = core
        .send_message(&account, &conversations[0], "one more", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Refused(Refusal::Exhausted { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("balance"), "{err}");

    pool.close().await;
    core.shutdown().await;
    support::drop_pg(&name).await;
}
