//! One journal suite, run against the in-process journal and Redis Streams: readers
//! that join at any point get every event after their cursor exactly once, in order,
//! ending after `finished`, also while many runs append at once (Redis sends them in
//! shared batches); and run starts announced to every subscriber, of every instance
//! sharing the journal. Redis only: a run's stream gets its expiry without one per
//! event, and readers go on exactly when the live subscription is lost.
//!
//! Redis is required: set `CHORUS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! `scripts/test` starts one.

use chorus_core::journal::{
    Journal, JournalEntry, JournalError, MemoryJournal, RedisJournal, RunEvent, RunStartStream,
    RunStarted,
};
use chorus_model::ids::{ConversationId, RunId};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

const EVENTS: u64 = 120;

fn event(seq: u64) -> RunEvent {
    match seq {
        1 => RunEvent::Started {
            message_id: "m".into(),
            model: "scripted/demo".into(),
            prefix: String::new(),
        },
        EVENTS => RunEvent::Finished {
            status: "complete".into(),
            reason: "stop".into(),
            error: None,
        },
        n => RunEvent::Delta {
            text: format!("t{n} "),
        },
    }
}

async fn redis_journal() -> Arc<dyn Journal> {
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let journal = RedisJournal::connect(&url, &prefix, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("Redis is required for this test and is not reachable at {url}: {e} (run scripts/test)"));
    Arc::new(journal)
}

/// Reads a follow stream to its end and checks it is exactly `after+1..=EVENTS`.
async fn read_all(journal: Arc<dyn Journal>, run: RunId, after: u64) {
    let entries: Vec<JournalEntry> = tokio::time::timeout(
        Duration::from_secs(20),
        journal
            .follow(&run, after)
            .map(|e| e.expect("journal error"))
            .collect(),
    )
    .await
    .unwrap_or_else(|_| panic!("reader after {after} did not reach `finished`"));
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (after + 1..=EVENTS).collect();
    assert_eq!(seqs, expected, "reader after {after}");
    for entry in &entries {
        assert_eq!(entry.event, event(entry.seq));
    }
}

async fn readers_join_at_every_point(journal: Arc<dyn Journal>) {
    let run = RunId::generate();
    let mut readers = Vec::new();
    // Readers waiting before the first event exists.
    for after in [0, 5] {
        readers.push(tokio::spawn(read_all(journal.clone(), run.clone(), after)));
    }
    for seq in 1..=EVENTS {
        journal
            .append(
                &run,
                JournalEntry {
                    seq,
                    event: event(seq),
                },
            )
            .await
            .unwrap();
        if seq % 10 == 0 {
            // Readers joining mid-run, behind and at the head.
            readers.push(tokio::spawn(read_all(
                journal.clone(),
                run.clone(),
                seq / 2,
            )));
            readers.push(tokio::spawn(read_all(journal.clone(), run.clone(), seq)));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Readers after the end get the rest of the backlog, then stop.
    for after in [0, EVENTS - 1] {
        readers.push(tokio::spawn(read_all(journal.clone(), run.clone(), after)));
    }
    for r in readers {
        r.await.unwrap();
    }
    assert!(journal.has_run(&run).await.unwrap());
    assert_eq!(journal.backlog(&run, EVENTS - 2).await.unwrap().len(), 2);
    assert!(!journal.has_run(&RunId::generate()).await.unwrap());
}

async fn out_of_order_appends_are_refused(journal: Arc<dyn Journal>) {
    let run = RunId::generate();
    let append = |seq: u64, event: RunEvent| {
        let (journal, run) = (journal.clone(), run.clone());
        async move { journal.append(&run, JournalEntry { seq, event }).await }
    };
    append(1, event(1)).await.unwrap();
    append(2, event(2)).await.unwrap();
    // The retry of an append whose answer was lost: the entry is there, so it succeeds.
    append(2, event(2)).await.unwrap();
    append(1, event(1)).await.unwrap();
    // Another event at a taken seq is refused, naming the seq to take next.
    for (seq, ev) in [(2, event(5)), (1, event(2))] {
        match append(seq, ev).await {
            Err(JournalError::OutOfOrder { expected, got, .. }) => {
                assert_eq!((expected, got), (3, seq));
            }
            other => panic!("append at {seq}: expected OutOfOrder, got {other:?}"),
        }
    }
    assert_eq!(journal.backlog(&run, 0).await.unwrap().len(), 2);
}

/// Redis answers slowly enough that an XADD's answer times out after it landed (writes
/// paused with `CLIENT PAUSE ... WRITE` beyond the writer's response timeout): the
/// writer's retry of the same entry succeeds instead of failing "out of order" forever,
/// and the run's next events, `finished` included, reach the journal and its readers.
#[tokio::test]
async fn redis_append_retried_after_a_lost_answer_lands_once() {
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let journal = RedisJournal::connect_with_timeout(
        &url,
        &prefix,
        Duration::from_secs(60),
        Duration::from_millis(100),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "Redis is required for this test and is not reachable at {url}: {e} (run scripts/test)"
        )
    });
    let mut control = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let run = RunId::generate();
    let entry = |seq: u64| JournalEntry {
        seq,
        event: event(seq),
    };
    journal.append(&run, entry(1)).await.unwrap();

    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(600)
        .arg("WRITE")
        .query_async(&mut control)
        .await
        .unwrap();
    let lost = journal.append(&run, entry(2)).await;
    assert!(
        matches!(lost, Err(JournalError::Redis(_))),
        "the XADD's answer should have timed out while writes were paused, got {lost:?}"
    );
    // The paused XADD lands when the pause ends (reads are not paused).
    let key = format!("{prefix}run:{run}");
    let landed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let len: u64 = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut control)
                .await
                .unwrap();
            if len == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(landed.is_ok(), "the paused XADD never landed");

    // What the run's writer does next: retry the same entry, then go on to the end.
    journal.append(&run, entry(2)).await.unwrap();
    for seq in 3..=EVENTS {
        journal.append(&run, entry(seq)).await.unwrap();
    }
    let journal: Arc<dyn Journal> = Arc::new(journal);
    read_all(journal, run, 0).await;
}

fn run_started() -> RunStarted {
    RunStarted {
        conversation_id: ConversationId::generate(),
        run_id: RunId::generate(),
    }
}

/// The next announcement of a subscription (failing after a few seconds without one).
async fn next_start(starts: &mut RunStartStream) -> RunStarted {
    tokio::time::timeout(Duration::from_secs(10), starts.next())
        .await
        .expect("no run start announced within 10 s")
        .expect("the announcements ended")
}

/// Whether a subscription has nothing more for a while (it missed nothing it should not
/// have, and got nothing twice).
async fn nothing_more(starts: &mut RunStartStream) {
    let more = tokio::time::timeout(Duration::from_millis(300), starts.next()).await;
    assert!(more.is_err(), "unexpected announcement {more:?}");
}

async fn run_starts_reach_every_subscriber(journal: Arc<dyn Journal>) {
    let (first, second) = (run_started(), run_started());
    let mut early = journal.run_starts();
    journal.announce_run_start(&first).await.unwrap();
    assert_eq!(next_start(&mut early).await, first);
    // A subscriber hears what is announced after it subscribed, and only that.
    let mut late = journal.run_starts();
    journal.announce_run_start(&second).await.unwrap();
    assert_eq!(next_start(&mut early).await, second);
    assert_eq!(next_start(&mut late).await, second);
    nothing_more(&mut early).await;
    nothing_more(&mut late).await;
}

/// Appends every event of `run`, one at a time as a run's writer does.
async fn write_run(journal: Arc<dyn Journal>, run: RunId) {
    for seq in 1..=EVENTS {
        journal
            .append(
                &run,
                JournalEntry {
                    seq,
                    event: event(seq),
                },
            )
            .await
            .unwrap();
    }
}

/// Many runs written at once (their appends share batches on Redis), each read by a
/// reader from the start and one joining midway: every reader gets exactly its run.
async fn many_runs_at_once(journal: Arc<dyn Journal>) {
    let runs: Vec<RunId> = (0..40).map(|_| RunId::generate()).collect();
    let mut tasks = Vec::new();
    for run in &runs {
        tasks.push(tokio::spawn(read_all(journal.clone(), run.clone(), 0)));
    }
    for run in &runs {
        tasks.push(tokio::spawn(write_run(journal.clone(), run.clone())));
    }
    for run in &runs {
        tasks.push(tokio::spawn(read_all(
            journal.clone(),
            run.clone(),
            EVENTS / 3,
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn memory_journal_suite() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new(Duration::from_secs(60)));
    readers_join_at_every_point(journal.clone()).await;
    out_of_order_appends_are_refused(journal.clone()).await;
    many_runs_at_once(journal.clone()).await;
    run_starts_reach_every_subscriber(journal).await;
}

#[tokio::test]
async fn redis_journal_suite() {
    let journal = redis_journal().await;
    readers_join_at_every_point(journal.clone()).await;
    out_of_order_appends_are_refused(journal.clone()).await;
    many_runs_at_once(journal.clone()).await;
    run_starts_reach_every_subscriber(journal).await;
}

fn test_redis_url() -> String {
    std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn control_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is required for this test and is not reachable at {url}: {e} (run scripts/test)"))
}

/// A run's stream expires a day after its first event while it streams, and after
/// the retention once it finished: set by the writer when the run starts and when it
/// ends, not with every event.
#[tokio::test]
async fn redis_stream_expiry_follows_the_run() {
    let url = test_redis_url();
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let journal: Arc<dyn Journal> = Arc::new(
        RedisJournal::connect(&url, &prefix, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let mut control = control_connection(&url).await;
    let run = RunId::generate();
    let key = format!("{prefix}run:{run}");
    let ttl = |mut c: redis::aio::MultiplexedConnection| {
        let key = key.clone();
        async move {
            let t: i64 = redis::cmd("TTL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            t
        }
    };
    for seq in 1..EVENTS {
        journal
            .append(
                &run,
                JournalEntry {
                    seq,
                    event: event(seq),
                },
            )
            .await
            .unwrap();
    }
    let running = ttl(control.clone()).await;
    assert!(
        (86_000..=86_400).contains(&running),
        "an unfinished run's stream should expire in about a day, TTL {running}"
    );
    journal
        .append(
            &run,
            JournalEntry {
                seq: EVENTS,
                event: event(EVENTS),
            },
        )
        .await
        .unwrap();
    let finished = ttl(control.clone()).await;
    assert!(
        (1..=60).contains(&finished),
        "a finished run's stream should expire after the retention (60 s), TTL {finished}"
    );
    let len: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut control)
        .await
        .unwrap();
    assert_eq!(len, EVENTS);
}

/// The ids of the pub/sub connections Redis has now.
async fn pubsub_clients(control: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(control)
        .await
        .unwrap();
    list.lines()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_string)
        })
        .collect()
}

/// The live subscription of an instance is cut (Redis kills the connection) while a
/// reader follows a run: what was published while it was down is read from the stream,
/// and the reader still gets every event exactly once.
#[tokio::test]
async fn redis_readers_go_on_when_the_subscription_is_lost() {
    let url = test_redis_url();
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let mut control = control_connection(&url).await;
    let before = pubsub_clients(&mut control).await;
    let journal: Arc<dyn Journal> = Arc::new(
        RedisJournal::connect(&url, &prefix, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    // This journal's subscription (connections other tests opened meanwhile may be
    // among them: cutting theirs is harmless by the same rule).
    let ours: Vec<String> = pubsub_clients(&mut control)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!ours.is_empty(), "the journal holds no pub/sub connection");
    let run = RunId::generate();
    let mut reader = journal.follow(&run, 0);
    let append = |seq: u64| {
        let (journal, run) = (journal.clone(), run.clone());
        async move {
            journal
                .append(
                    &run,
                    JournalEntry {
                        seq,
                        event: event(seq),
                    },
                )
                .await
                .unwrap()
        }
    };
    let half = EVENTS / 2;
    for seq in 1..=half {
        append(seq).await;
    }
    for seq in 1..=half {
        let entry = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("no live event within 10 s")
            .expect("the reader ended")
            .expect("journal error");
        assert_eq!(entry.seq, seq);
    }
    for id in &ours {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut control)
            .await
            .unwrap();
    }
    for seq in half + 1..=EVENTS {
        append(seq).await;
    }
    let rest: Vec<u64> = tokio::time::timeout(
        Duration::from_secs(20),
        reader
            .map(|e| e.expect("journal error").seq)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the reader did not reach `finished` after the subscription was lost");
    assert_eq!(rest, (half + 1..=EVENTS).collect::<Vec<_>>());
}

#[tokio::test]
async fn run_starts_are_announced_across_redis_instances() {
    // Two journals on one prefix behave like two chorus instances.
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let connect = || RedisJournal::connect(&url, &prefix, Duration::from_secs(60));
    let a = connect().await.unwrap();
    let b = connect().await.unwrap();
    let (mut on_a, mut on_b) = (a.run_starts(), b.run_starts());
    let (from_a, from_b) = (run_started(), run_started());
    a.announce_run_start(&from_a).await.unwrap();
    assert_eq!(next_start(&mut on_b).await, from_a);
    b.announce_run_start(&from_b).await.unwrap();
    assert_eq!(next_start(&mut on_b).await, from_b);
    // The announcing instance hears its own announcements too, in order.
    assert_eq!(next_start(&mut on_a).await, from_a);
    assert_eq!(next_start(&mut on_a).await, from_b);
    nothing_more(&mut on_a).await;
    nothing_more(&mut on_b).await;
    // An instance that connects later hears only what comes after.
    let c = connect().await.unwrap();
    let mut on_c = c.run_starts();
    let later = run_started();
    a.announce_run_start(&later).await.unwrap();
    assert_eq!(next_start(&mut on_c).await, later);
    nothing_more(&mut on_c).await;
}

#[tokio::test]
async fn redis_journal_is_shared_between_instances() {
    // Two journals on one prefix behave like two chorus instances.
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let writer = RedisJournal::connect(&url, &prefix, Duration::from_secs(60))
        .await
        .unwrap();
    let reader: Arc<dyn Journal> = Arc::new(
        RedisJournal::connect(&url, &prefix, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let run = RunId::generate();
    let follower = tokio::spawn(read_all(reader.clone(), run.clone(), 0));
    for seq in 1..=EVENTS {
        writer
            .append(
                &run,
                JournalEntry {
                    seq,
                    event: event(seq),
                },
            )
            .await
            .unwrap();
    }
    follower.await.unwrap();
}
