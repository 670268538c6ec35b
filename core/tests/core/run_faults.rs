//! Faults inside a run, through the real engine (SQLite, in-process journal, the
//! scripted provider): a panic in the run's task.

use crate::support::{alice_says_hello, core_with, events_to_end, saved_reply};
use chorus_core::journal::RunEvent;
use chorus_model::RunStatus;

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
    let (core, dir) = core_with(&format!(
        r#"[engine]
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
"#
    ))
    .await;
    // The checkpointer (which renewed the lease of the dead run) and the sweeper.
    core.start_background();
    let (alice, sent) = alice_says_hello(&core, "scripted/demo").await;

    let events = events_to_end(&core, &alice, &sent.run_id).await;
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
    assert_eq!(saved_reply(&core, &alice, &sent).await, "alpha beta gamma ");
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
        .send_message(&alice, &sent.conversation_id, "Again", None, None)
        .await
        .unwrap();
    let last = events_to_end(&core, &alice, &again.run_id).await;
    assert!(matches!(
        &last.last().unwrap().event,
        RunEvent::Finished { status, .. } if status == "failed"
    ));
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
