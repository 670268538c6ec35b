//! How a run's text reaches its journal, through the real engine (SQLite, in-process
//! journal, the scripted provider): deltas that arrived together become one event.

use crate::support::{alice_says_hello, core_with, events_to_end, saved_reply};
use chorus_core::journal::RunEvent;

const WORDS: usize = 300;

/// At a pace no timer keeps, every word but the first is due at once when the first
/// comes: the engine joins them instead of journaling one event per word, and the
/// reply is still exact, its events numbered without a gap, its usage the model's.
#[tokio::test(flavor = "multi_thread")]
async fn deltas_that_arrived_together_are_journaled_as_one_event() {
    let script: String = (0..WORDS).map(|i| format!("w{i} ")).collect();
    let (core, dir) = core_with(&format!(
        r#"[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo"]
text = {script:?}
tokens_per_second = 1000000.0
"#
    ))
    .await;
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
