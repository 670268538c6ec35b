//! Faults inside a run, through the real engine (SQLite, in-process journal, the
//! scripted provider): a panic in the run's task.

use chorus_core::Core;
use chorus_core::config::Config;
use chorus_core::journal::{JournalEntry, RunEvent};
use chorus_model::RunStatus;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// The scripted provider panics when its script reaches `@panic` (feature `test-util`),
/// inside the run's task, after three words have streamed. Before the fix the run
/// stayed `streaming` forever, its lease renewed by the checkpointer, and no reader saw
/// `finished`.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_a_run_ends_it_failed_with_its_text_charged_once() {
    panic_ends_the_run_failed_with_its_text(100.0).await;
}

/// The same panic where the words before it have all arrived at once (a pace no timer
/// keeps): the engine joins them into one delta, and polls the stream for more while
/// joining; the panic met there still comes after the text received before it is
/// journaled, charged and saved.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_behind_joined_deltas_keeps_the_text_before_it() {
    panic_ends_the_run_failed_with_its_text(1_000_000.0).await;
}

async fn panic_ends_the_run_failed_with_its_text(tokens_per_second: f64) {
    let dir = std::env::temp_dir().join(format!("chorus-panic-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!(
        r#"data_dir = {:?}
[engine]
checkpoint_interval_ms = 50
[accounts]
default_balance = 10.0
[quota]
default_prompt_price = 1000.0
default_completion_price = 1000.0
[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo"]
text = "alpha beta gamma @panic never shown"
tokens_per_second = {tokens_per_second:?}
"#,
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    // The checkpointer (which renewed the lease of the dead run) and the sweeper.
    core.start_background();
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
    .expect("the run whose task panicked never reached `finished`");
    let text: String = events
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "alpha beta gamma ");
    match &events.last().unwrap().event {
        RunEvent::Finished {
            status,
            reason,
            error,
        } => {
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("failed", "internal_error")
            );
            let error = error.as_deref().unwrap_or_default();
            assert!(error.starts_with("internal error"), "{error}");
            assert!(
                !error.contains("@panic"),
                "the panic's message leaked: {error}"
            );
        }
        other => panic!("the last event is {other:?}, not `finished`"),
    }

    let run = core.owned_run(&alice, &sent.run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.text, "alpha beta gamma ");
    assert_eq!(run.lease_expires_at, None, "the lease was not released");
    let conversation = core.conversation(&alice, &conversation.id).await.unwrap();
    let reply = conversation
        .messages
        .iter()
        .find(|m| m.id == sent.assistant_message_id)
        .expect("the reply message");
    assert_eq!(reply.content, "alpha beta gamma ");
    // Charged once, for what it produced; the balance is still the ledger's sum.
    let ledger = core.ledger(&alice, 100).await.unwrap();
    let charges: Vec<_> = ledger
        .iter()
        .filter(|e| e.run_id.as_ref() == Some(&sent.run_id))
        .collect();
    assert_eq!(charges.len(), 1, "{ledger:?}");
    assert!(charges[0].amount < 0, "{:?}", charges[0]);
    let usage = core.usage(&alice, 1).await.unwrap();
    assert_eq!(
        usage.balance_micros,
        ledger.iter().map(|e| e.amount).sum::<i64>()
    );
    // The engine is still whole: the next message gets an answer up to the panic again.
    let again = core
        .send_message(&alice, &conversation.conversation.id, "Again", None, None)
        .await
        .unwrap();
    let last = tokio::time::timeout(
        Duration::from_secs(20),
        core.follow_run(&alice, &again.run_id, 0)
            .await
            .unwrap()
            .map(|e| e.expect("journal error"))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the second run never finished");
    assert!(matches!(
        &last.last().unwrap().event,
        RunEvent::Finished { status, .. } if status == "failed"
    ));
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
