//! How a run's text reaches its journal, through the real engine (SQLite, the
//! in-process or a real Redis journal, the scripted provider): deltas that arrived
//! together become one event, and a delta whose append's answer is read only with the
//! next event still keeps every rule of the journal's failures.

use crate::support::{alice_says_hello, core_with, events_to_end, saved_reply};
use chorus_core::journal::{JournalEntry, RunEvent};
use futures::StreamExt;

const WORDS: usize = 300;

/// The section of a scripted model, `scripted/demo`, that says `script` at
/// `tokens_per_second`.
fn scripted_provider(script: &str, tokens_per_second: f64) -> String {
    format!(
        r#"[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo"]
text = {script:?}
tokens_per_second = {tokens_per_second:?}
"#
    )
}

/// At a pace no timer keeps, every word but the first is due at once when the first
/// comes: the engine joins them instead of journaling one event per word, and the
/// reply is still exact, its events numbered without a gap, its usage the model's.
#[tokio::test(flavor = "multi_thread")]
async fn deltas_that_arrived_together_are_journaled_as_one_event() {
    let script: String = (0..WORDS).map(|i| format!("w{i} ")).collect();
    let (core, dir) = core_with(&scripted_provider(&script, 1_000_000.0)).await;
    let (alice, sent) = alice_says_hello(&core, "scripted/demo").await;
    let events = events_to_end(&core, &alice, &sent.run_id).await;

    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.concat(), script);
    assert!(
        deltas.len() <= WORDS / 4,
        "{} delta events for {WORDS} words that arrived together",
        deltas.len()
    );
    assert!(
        events.iter().any(|e| matches!(
            e.event,
            RunEvent::Usage { completion_tokens, .. } if completion_tokens == WORDS as u64
        )),
        "no usage of {WORDS} tokens: {events:?}"
    );
    assert!(matches!(
        &events.last().unwrap().event,
        RunEvent::Finished { status, .. } if status == "complete"
    ));
    assert_eq!(saved_reply(&core, &alice, &sent).await, script);
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The text a reader shows after `events`: deltas appended, a snapshot in place of
/// everything before it.
fn replayed(events: &[JournalEntry]) -> String {
    let mut text = String::new();
    for entry in events {
        match &entry.event {
            RunEvent::Delta { text: delta } => text.push_str(delta),
            RunEvent::Snapshot { text: whole } => text.clone_from(whole),
            _ => {}
        }
    }
    text
}

/// The next event of `reader`, within 20 s.
async fn read_one(reader: &mut chorus_core::journal::EntryStream) -> JournalEntry {
    tokio::time::timeout(std::time::Duration::from_secs(20), reader.next())
        .await
        .expect("an event within 20 s")
        .expect("the run's events go on to `finished`")
        .expect("journal error")
}

/// A Redis journal that loses a run's stream while the run streams (its key deleted,
/// as a Redis restarted without persistence loses it) refuses the run's next delta.
/// The run reads that answer only when it has the delta after it, and still starts the
/// stream again with a snapshot of the text before the refused delta, then that delta:
/// a reader that stayed, a reader from the start and the saved reply all have the
/// exact text, in seqs that only grow.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_redis_stream_is_lost_mid_reply_starts_it_again_with_a_snapshot() {
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let script: String = (0..60).map(|i| format!("w{i} ")).collect();
    let (core, dir) = core_with(&format!(
        "[journal]\nredis_url = {url:?}\nkey_prefix = {prefix:?}\nretention_secs = 60\n\n{}",
        scripted_provider(&script, 60.0)
    ))
    .await;
    let (alice, sent) = alice_says_hello(&core, "scripted/demo").await;
    let mut reader = core
        .follow_run(&alice, &sent.run_id, 0)
        .await
        .expect("follow the run");
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|e: &&JournalEntry| matches!(e.event, RunEvent::Delta { .. }))
        .count()
        < 5
    {
        seen.push(read_one(&mut reader).await);
    }
    let mut redis = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let deleted: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}run:{}", sent.run_id))
        .query_async(&mut redis)
        .await
        .expect("delete the run's stream");
    assert_eq!(deleted, 1, "the run's stream was not in Redis");
    while !seen.last().is_some_and(|e| e.event.is_finished()) {
        seen.push(read_one(&mut reader).await);
    }

    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "seqs that do not grow: {:?}",
        seen.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e.event, RunEvent::Snapshot { .. })),
        "no snapshot after the journal lost the run: {seen:?}"
    );
    assert_eq!(
        replayed(&seen),
        script,
        "the text of the reader that stayed"
    );
    assert!(matches!(
        &seen.last().unwrap().event,
        RunEvent::Finished { status, .. } if status == "complete"
    ));
    let from_start = events_to_end(&core, &alice, &sent.run_id).await;
    assert!(
        matches!(from_start[0].event, RunEvent::Snapshot { .. }),
        "the stream Redis holds now starts with {:?}",
        from_start[0]
    );
    assert_eq!(replayed(&from_start), script, "the text of a new reader");
    assert_eq!(saved_reply(&core, &alice, &sent).await, script);
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
