//! The ledger under a race, on PostgreSQL: hundreds of concurrent runs of one account
//! through the real core (scripted provider, fast tokens) must never leave its balance
//! different from the sum of its ledger, must each be charged exactly once, and once
//! the balance is exhausted no further run may start. Each run reserves its prompt and
//! longest answer at admission, so parallel runs cannot overdraw together: on SQLite
//! and PostgreSQL, a burst of parallel runs against one small balance starts only as
//! many as the balance covers, and none overdraws.

use crate::support;

use chorus_core::config::Config;
use chorus_core::quota::Refusal;
use chorus_core::{Core, CoreError};
use futures::StreamExt;
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
reserve_output_tokens = 16
[limits]
messages_per_window = 0
max_concurrent_runs = 0
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
    core.grant_credits(&admin, &account.id, 1.0, Some("race"))
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
                    Refusal::Exhausted { .. } | Refusal::CannotCover { .. },
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

    // The refusal held: replay the ledger in order; if the balance ever reached zero,
    // no run started after that moment. With reservations it never does here: each
    // run used less than it reserved (8 words of 16 reserved), so the runs in flight
    // together never spent more than the balance.
    let ledger =
        sqlx::query("SELECT amount, created_at, run_id FROM ledger ORDER BY created_at, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut running = 0i64;
    let mut crossing: Option<i64> = None;
    for (i, row) in ledger.iter().enumerate() {
        running += row.get::<i64, _>("amount");
        if running <= 0 && crossing.is_none() && i > 0 {
            crossing = Some(row.get("created_at"));
        }
    }
    let store = chorus_store::Store::connect(&url, Some(2)).await.unwrap();
    let balance = store.balance(&account.id).await.unwrap();
    assert_eq!(balance, running, "balance equals the sum of the ledger");
    assert_eq!(balance, store.ledger_sum(&account.id).await.unwrap());
    store.close().await;
    if let Some(crossed_at) = crossing {
        let late = runs
            .iter()
            .filter(|r| r.get::<i64, _>("created_at") > crossed_at)
            .count();
        assert_eq!(
            late, 0,
            "{late} runs started after the balance was exhausted"
        );
    }
    assert!(balance >= 0, "overdrawn by {}", -balance);

    // Spent one run at a time, the balance ends refusing every new run, with a
    // message that says why.
    let mut refusal = None;
    for _ in 0..200 {
        match core
            .send_message(&account, &conversations[0], "one more", None, None)
            .await
        {
            Ok(sent) => {
                let _: Vec<_> = core
                    .follow_run(&account, &sent.run_id, 0)
                    .await
                    .unwrap()
                    .collect()
                    .await;
            }
            Err(err) => {
                refusal = Some(err);
                break;
            }
        }
    }
    let err = refusal.expect("the balance never ran out");
    assert!(
        matches!(
            err,
            CoreError::Refused(Refusal::Exhausted { .. } | Refusal::CannotCover { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("balance"), "{err}");

    pool.close().await;
    core.shutdown().await;
    support::drop_pg(&name).await;
}

/// A burst of parallel runs against a balance that covers two reservations: only the
/// runs the balance covers start (each holding its reservation until it ends), none
/// overdraws, and the balance is still the sum of the ledger. Before reservations,
/// every run passed admission (each checked only its prompt) and the account ended
/// far below zero.
async fn parallel_runs_cannot_overdraw(database: Option<&str>) {
    let dir = std::env::temp_dir().join(format!("chorus-burst-{}", uuid::Uuid::new_v4().simple()));
    let database = database.map_or(String::new(), |url| {
        format!("[database]\nurl = \"{url}\"\nmax_connections = 16\n")
    });
    let toml = format!(
        r#"data_dir = {:?}
{database}
[quota]
enabled = true
reserve_output_tokens = 16
[limits]
messages_per_window = 0
max_concurrent_runs = 0
[[providers]]
id = "s"
kind = "scripted"
models = ["demo"]
text = "one two three four five six seven eight"
tokens_per_second = 10.0
model_info = {{ demo = {{ prompt_price = 1000.0, completion_price = 2000.0 }} }}
"#,
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    let account = core
        .create_account("burst", false, Some("correct horse battery"))
        .await
        .unwrap();
    let root = core.create_account("root", true, None).await.unwrap();
    let admin = core.admin(&root).unwrap();
    // 16 reserved completion tokens at 2,000 credits per million are 0.032 credits,
    // plus the prompt: 0.1 credits cover two such reservations, not three.
    core.grant_credits(&admin, &account.id, 0.1, None)
        .await
        .unwrap();
    let conversations =
        join_all((0..BURST).map(|_| core.create_conversation(&account, None, None, None)))
            .await
            .into_iter()
            .map(|c| c.unwrap().id)
            .collect::<Vec<_>>();
    let sends = conversations.iter().enumerate().map(|(i, conv)| {
        let (core, account) = (core.clone(), account.clone());
        async move {
            core.send_message(&account, conv, &format!("message {i}"), None, None)
                .await
        }
    });
    let mut accepted = Vec::new();
    let mut reservation = 0;
    for result in join_all(sends).await {
        match result {
            Ok(sent) => accepted.push(sent.run_id),
            Err(CoreError::Refused(Refusal::CannotCover { reservation: r, .. })) => reservation = r,
            Err(other) => panic!("a send failed for another reason: {other}"),
        }
    }
    assert!(reservation > 0, "no send was refused for lack of cover");
    // Two fit at once; a third only once one has ended (slow replies make that rare).
    assert!(
        !accepted.is_empty() && accepted.len() < BURST / 4,
        "{} of {BURST} parallel runs started against a balance covering two",
        accepted.len()
    );
    for run in &accepted {
        let events = tokio::time::timeout(
            Duration::from_secs(30),
            core.follow_run(&account, run, 0)
                .await
                .unwrap()
                .collect::<Vec<_>>(),
        )
        .await
        .expect("a run never finished");
        assert!(events.last().unwrap().as_ref().unwrap().event.is_finished());
    }
    let ledger = core.ledger(&account, 1000).await.unwrap();
    let usage = core.usage(&account, 1).await.unwrap();
    assert_eq!(
        usage.balance_micros,
        ledger.iter().map(|e| e.amount).sum::<i64>(),
        "balance differs from the ledger"
    );
    assert_eq!(
        ledger.iter().filter(|e| e.run_id.is_some()).count(),
        accepted.len(),
        "one charge per run"
    );
    assert!(
        usage.balance_micros >= 0,
        "overdrawn by {} micro-credits (one reservation is {reservation})",
        -usage.balance_micros
    );
    // Settled: the reservations went with the runs, so what is left can be reserved.
    let left = core
        .send_message(&account, &conversations[0], "after", None, None)
        .await;
    match left {
        Ok(_) => assert!(usage.balance_micros >= reservation),
        Err(CoreError::Refused(Refusal::CannotCover { held, .. })) => {
            assert_eq!(held, 0, "a reservation outlived its run");
            assert!(usage.balance_micros < reservation);
        }
        Err(other) => panic!("{other}"),
    }
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Parallel sends in one burst.
const BURST: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_runs_cannot_overdraw_on_sqlite() {
    parallel_runs_cannot_overdraw(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_runs_cannot_overdraw_on_postgres() {
    let (url, name) = support::postgres_database().await;
    parallel_runs_cannot_overdraw(Some(&url)).await;
    support::drop_pg(&name).await;
}
