//! Journal micro-benchmark: one event appended and delivered to one reader of its run,
//! per event, through the in-process journal and through Redis.
//!
//! `one run` is a single writer appending one event after another (each append waits
//! for the journal's answer: on Redis one round trip); `64 runs` is 64 runs written at
//! once, each followed by its own reader, which is how a server streams (on Redis their
//! appends share batches). Each run ends with `finished`, so Redis expires it after a
//! minute. Redis: `CHORUS_BENCH_REDIS_URL`, else `CHORUS_TEST_REDIS_URL`, else
//! `redis://127.0.0.1:6379`; the Redis cases are skipped when it does not answer.
//!
//! `cargo bench -p chorus-core --bench journal`

use chorus_core::journal::{Journal, JournalEntry, MemoryJournal, RedisJournal, RunEvent};
use chorus_model::ids::RunId;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(seq: u64, last: u64) -> RunEvent {
    if seq == last {
        RunEvent::Finished {
            status: "complete".into(),
            reason: "stop".into(),
            error: None,
        }
    } else {
        RunEvent::Delta {
            text: "token ".into(),
        }
    }
}

/// Writes about `events` events over `runs` runs at once, each read to its end by its
/// own reader; returns the time until every reader had every event, and how many
/// events that was.
async fn write_and_read(journal: Arc<dyn Journal>, runs: usize, events: u64) -> (Duration, u64) {
    let per_run = events.div_ceil(runs as u64).max(1);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..runs {
        let journal = journal.clone();
        tasks.spawn(async move {
            let run = RunId::generate();
            let reader = journal.follow(&run, 0);
            let read = tokio::spawn(async move {
                let n = reader.map(|e| e.expect("journal error")).count().await;
                assert_eq!(n as u64, per_run, "a reader missed events");
            });
            for seq in 1..=per_run {
                journal
                    .append(
                        &run,
                        JournalEntry {
                            seq,
                            event: event(seq, per_run),
                        },
                    )
                    .await
                    .expect("append");
            }
            read.await.expect("reader");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("run task");
    }
    (start.elapsed(), per_run * runs as u64)
}

fn bench_journal(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    journal: Arc<dyn Journal>,
) {
    let mut group = c.benchmark_group(format!("journal append + fan-out to one reader ({name})"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for runs in [1usize, 64] {
        let label = if runs == 1 {
            "one run".to_string()
        } else {
            format!("{runs} runs")
        };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let (took, events) = rt.block_on(write_and_read(journal.clone(), runs, iters));
                // Per event: scaled to the `iters` events asked for.
                took.mul_f64(iters as f64 / events as f64)
            })
        });
    }
    group.finish();
}

fn journals(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let memory: Arc<dyn Journal> = Arc::new(MemoryJournal::new(Duration::from_secs(60)));
    bench_journal(c, "in-process", &rt, memory);
    let url = std::env::var("CHORUS_BENCH_REDIS_URL")
        .or_else(|_| std::env::var("CHORUS_TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-bench:{}:", uuid::Uuid::new_v4().simple());
    match rt.block_on(RedisJournal::connect(
        &url,
        &prefix,
        Duration::from_secs(60),
    )) {
        Ok(redis) => bench_journal(c, "Redis", &rt, Arc::new(redis)),
        Err(e) => eprintln!("skipping the Redis journal: {url} does not answer ({e})"),
    }
}

criterion_group!(benches, journals);
criterion_main!(benches);
