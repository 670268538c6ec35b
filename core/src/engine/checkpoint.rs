//! The checkpointer: one task per instance that saves the text of every local run in
//! one batched transaction per interval, renewing their leases and collecting stop
//! requests made on other instances.
//!
//! Run tasks never wait on the database while they stream: they only update their
//! in-memory [`Progress`]. So a busy database (SQLite has one writer) slows
//! checkpoints, never tokens, and N streaming runs cost one transaction per interval
//! instead of N.

use super::EngineInner;
use crate::telemetry::timing;
use chorus_model::ids::RunId;
use chorus_model::time::now_ms;
use chorus_store::Checkpoint;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a run has produced so far, shared between its task and the checkpointer.
#[derive(Debug)]
pub(crate) struct Progress {
    pub text: String,
    /// The journal seq of the last event whose text is in `text`.
    pub seq: u64,
    dirty: bool,
    last_saved: Instant,
    /// Set when a checkpoint found the run no longer leased to this instance (another
    /// instance declared it dead): the run task must end without writing anything.
    pub lease_lost: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            text: String::new(),
            seq: 0,
            // The first checkpoint marks the run `streaming`.
            dirty: true,
            last_saved: Instant::now(),
            lease_lost: false,
        }
    }

    pub fn push(&mut self, text: &str) {
        self.text.push_str(text);
        self.dirty = true;
    }
}

pub(crate) type SharedProgress = Arc<Mutex<Progress>>;

pub(super) async fn checkpoint_forever(inner: Arc<EngineInner>) {
    let mut ticker = tokio::time::interval(inner.settings.checkpoint_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        checkpoint_once(&inner).await;
    }
}

/// Saves every local run that has new text or a lease due for renewal.
async fn checkpoint_once(inner: &EngineInner) {
    // A run with no new text is written this long after its last checkpoint, to renew
    // its lease. The store renews a lease only once a sixth of it has passed, and the
    // last checkpoint may not have renewed it: so a sixth here too, which keeps about
    // two thirds of a lease left at the least, as when every checkpoint renewed it.
    let renew_after = inner.settings.lease_ttl / 6;
    let due: Vec<(RunId, Checkpoint)> = {
        let local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .iter()
            .filter_map(|(id, run)| {
                let mut p = run.progress.lock().unwrap_or_else(|e| e.into_inner());
                if !(p.dirty || p.last_saved.elapsed() >= renew_after) {
                    return None;
                }
                p.dirty = false;
                p.last_saved = Instant::now();
                Some((
                    id.clone(),
                    Checkpoint {
                        text: p.text.clone(),
                        seq: p.seq as i64,
                    },
                ))
            })
            .collect()
    };
    if due.is_empty() {
        return;
    }
    let lease_until = now_ms() + inner.settings.lease_ttl.as_millis() as i64;
    let started = Instant::now();
    let written = inner
        .store
        .checkpoint_many(&inner.settings.owner, &due, lease_until)
        .await;
    timing::log_step(
        "checkpoint",
        &[
            ("runs", due.len() as u128),
            ("write", started.elapsed().as_micros()),
        ],
    );
    let results = match written {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, runs = due.len(), "checkpoint failed; retrying next interval");
            let local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
            for (id, _) in &due {
                if let Some(run) = local.get(id) {
                    run.progress.lock().unwrap_or_else(|e| e.into_inner()).dirty = true;
                }
            }
            return;
        }
    };
    let local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
    for ((id, _), result) in due.iter().zip(results) {
        let Some(run) = local.get(id) else { continue };
        match result {
            Some(false) => {}
            Some(true) => run.stop.cancel(),
            None => {
                tracing::warn!(run = %id, "lost the run lease; abandoning the run");
                run.progress
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .lease_lost = true;
                run.stop.cancel();
            }
        }
    }
}
