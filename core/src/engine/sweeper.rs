//! Marks runs whose instance died `interrupted`, keeping every byte of their text
//! that the checkpoint or the journal still holds, and ends their journal so readers
//! stop waiting. It also deletes conversations whose retention has passed (gateway
//! requests kept as runs), a batch at a time.

use super::EngineInner;
use crate::journal::{JournalEntry, RunEvent};
use crate::quota::{Charge, TokenCounts};
use chorus_store::Run;
use std::sync::Arc;
use std::time::Duration;

/// Most expired conversations deleted per sweep, so one sweep stays short.
const EXPIRED_BATCH: i64 = 100;

pub(super) async fn sweep_forever(inner: Arc<EngineInner>) {
    let period = (inner.settings.lease_ttl / 3).max(Duration::from_millis(500));
    let mut restarted_owner = Some(inner.settings.owner.clone());
    loop {
        match inner.store.orphaned_runs(restarted_owner.as_deref()).await {
            Ok(runs) => {
                restarted_owner = None;
                for run in runs {
                    if inner
                        .local
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(&run.id)
                    {
                        continue;
                    }
                    if let Err(e) = recover(&inner, &run).await {
                        tracing::warn!(run = %run.id, error = %e, "could not recover orphaned run");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper: cannot list orphaned runs"),
        }
        match inner
            .store
            .delete_expired_conversations(chorus_model::time::now_ms(), EXPIRED_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                conversations = n,
                "sweeper: deleted conversations past their retention"
            ),
            Err(e) => tracing::warn!(error = %e, "sweeper: cannot delete expired conversations"),
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

async fn recover(
    inner: &EngineInner,
    run: &Run,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let backlog = inner.journal.backlog(&run.id, 0).await.unwrap_or_default();
    let mut journal_text: Option<String> = None;
    for entry in &backlog {
        match &entry.event {
            RunEvent::Started { .. } => journal_text = Some(String::new()),
            RunEvent::Delta { text } => journal_text.get_or_insert_with(String::new).push_str(text),
            RunEvent::Snapshot { text } => journal_text = Some(text.clone()),
            _ => {}
        }
    }
    let last_seq = backlog.last().map(|e| e.seq);
    // The journal may hold more than the last checkpoint; never keep less.
    let text = match journal_text {
        Some(jt) if jt.len() > run.text.len() && jt.starts_with(&run.text) => jt,
        _ => run.text.clone(),
    };
    // Ended in the journal but not in the store: the instance died in between.
    let already_finished = backlog.iter().any(|e| e.event.is_finished());
    let seq = last_seq.unwrap_or(run.checkpoint_seq as u64);
    let charge = orphan_charge(inner, run, &text).await;
    if !inner
        .store
        .interrupt_orphan_charged(run, &text, seq as i64 + 1, charge.as_ref())
        .await?
    {
        return Ok(()); // someone else got there first
    }
    tracing::info!(run = %run.id, chars = text.len(), "marked orphaned run interrupted");
    // Its surface died with its instance: counted as `other`.
    crate::telemetry::metrics::orphan_interrupted(
        &run.model,
        charge.as_ref().map_or(0, |c| c.amount),
    );
    if already_finished {
        return Ok(());
    }
    let finished = RunEvent::Finished {
        status: "interrupted".into(),
        reason: "lease_expired".into(),
        error: None,
    };
    // A journal that lost the run (in-process, after a restart) gets the whole text
    // as a snapshot first, so its readers can show it.
    let mut events = Vec::with_capacity(2);
    if last_seq.is_none() {
        events.push(RunEvent::Snapshot { text });
    }
    events.push(finished);
    for (offset, event) in (1..).zip(events) {
        inner
            .journal
            .append(
                &run.id,
                JournalEntry {
                    seq: seq + offset,
                    event,
                },
            )
            .await?;
    }
    Ok(())
}

/// What an orphaned run is charged: its instance died before it could report usage,
/// so the prompt as estimated when it started and its text as the model counts it.
/// A run that produced nothing is not charged.
async fn orphan_charge(inner: &EngineInner, run: &Run, text: &str) -> Option<Charge> {
    if text.is_empty() {
        return None;
    }
    let prompt = match inner.store.run_prompt_estimate(&run.id).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(run = %run.id, error = %e, "cannot read the prompt estimate; charging the reply only");
            0
        }
    };
    let completion = match inner.providers.resolve_chain(&run.model) {
        Ok(chain) if !chain.is_empty() => {
            chorus_providers::count_tokens(chain[0].kind, &chain[0].model, text)
        }
        _ => chorus_providers::estimate_tokens(text),
    };
    Some(inner.settings.prices.charge(
        &run.model,
        TokenCounts {
            prompt,
            completion: completion as i64,
            cached_prompt: 0,
        },
    ))
}
