//! How a run's text reaches its journal, through the real engine (SQLite, in-process
//! journal, the scripted provider): deltas that arrived together become one event.

use chorus_core::Core;
use chorus_core::config::Config;
use chorus_core::journal::{JournalEntry, RunEvent};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

const WORDS: usize = 300;

/// At a pace no timer keeps, every word but the first is due at once when the first
/// comes: the engine joins them instead of journaling one event per word, and the
/// reply is still exact, its events numbered without a gap, its usage the model's.
#[tokio::test(flavor = "multi_thread")]
async fn deltas_that_arrived_together_are_journaled_as_one_event() {
    let dir = std::env::temp_dir().join(format!("chorus-join-{}", uuid::Uuid::new_v4().simple()));
    let script: String = (0..WORDS).map(|i| format!("w{i} ")).collect();
    let toml = format!(
        r#"data_dir = {:?}
[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo"]
text = {script:?}
tokens_per_second = 1000000.0
"#,
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    let alice = core
        .create_account("alice", false, Some("correct horse battery"))
        .await
        .unwrap();
    let conversation = core
        .create_conversation(&alice, None, Some("scripted/demo"), None)
        .await
        .unwrap();
    let sent = core
        .send_message(&alice, &conversation.id, "Hello", None, None)
        .await
        .unwrap();
    let events: Vec<JournalEntry> = tokio::time::timeout(
        Duration::from_secs(20),
        core.follow_run(&alice, &sent.run_id, 0)
            .await
            .unwrap()
            .map(|e| e.expect("journal error"))
            .collect(),
    )
    .await
    .expect("the run never finished");

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
    let saved = core.conversation(&alice, &conversation.id).await.unwrap();
    let reply = saved
        .messages
        .iter()
        .find(|m| m.id == sent.assistant_message_id)
        .expect("the reply message");
    assert_eq!(reply.content, script);
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
