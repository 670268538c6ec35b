//! One run, from the provider's stream to the journal and the store.
//!
//! Hot path: each provider event becomes one journal append and, for text, an append
//! to the run's in-memory progress. The task never waits on the database while it
//! streams: the checkpointer saves progress in batches; the task writes once, at the end.

use super::checkpoint::SharedProgress;
use super::{EngineInner, RunJob};
use crate::journal::{JournalEntry, RunEvent};
use crate::provider::{ProviderEvent, Usage};
use crate::store::{RunOutcome, RunStatus};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The run's journal writer: assigns seqs and survives a journal outage by replacing
/// the lost events with a snapshot at the end.
struct Writer<'a> {
    inner: &'a EngineInner,
    job: &'a RunJob,
    seq: u64,
    degraded: bool,
}

impl Writer<'_> {
    async fn append(&mut self, event: RunEvent) {
        let entry = JournalEntry {
            seq: self.seq + 1,
            event,
        };
        for attempt in 0..3u32 {
            match self
                .inner
                .journal
                .append(&self.job.run_id, entry.clone())
                .await
            {
                Ok(()) => {
                    self.seq += 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(run = %self.job.run_id, error = %e, attempt, "journal append failed");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        self.degraded = true;
    }
}

pub(super) async fn execute(
    inner: Arc<EngineInner>,
    job: RunJob,
    stop: CancellationToken,
    progress: SharedProgress,
) {
    let owner = inner.settings.owner.clone();
    let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = Writer {
        inner: &inner,
        job: &job,
        seq: 0,
        degraded: false,
    };
    w.append(RunEvent::Started {
        message_id: job.message_id.clone(),
        model: job.model_ref.clone(),
        prefix: job.prefix.clone(),
    })
    .await;
    lock().seq = w.seq;

    let mut usage: Option<Usage> = None;
    let mut finish_reason: Option<String> = None;
    let mut failure: Option<String> = None;
    let mut stopped_by: Option<&'static str> = None;

    let stream = match inner.providers.resolve(&job.model_ref) {
        Err(e) => Err(e.to_string()),
        Ok((provider, _)) => tokio::select! {
            r = provider.stream(job.request.clone()) => r.map_err(|e| e.to_string()),
            _ = stop.cancelled() => { stopped_by = Some("stopped"); Err(String::new()) }
            _ = inner.shutdown.cancelled() => { stopped_by = Some("shutdown"); Err(String::new()) }
        },
    };

    match stream {
        Err(message) => {
            if stopped_by.is_none() {
                failure = Some(message);
            }
        }
        Ok(mut stream) => loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => { stopped_by = Some("stopped"); break; }
                _ = inner.shutdown.cancelled() => { stopped_by = Some("shutdown"); break; }
                next = stream.next() => match next {
                    None => break,
                    Some(Ok(ProviderEvent::Text(delta))) => {
                        lock().push(&delta);
                        w.append(RunEvent::Delta { text: delta }).await;
                        lock().seq = w.seq;
                    }
                    Some(Ok(ProviderEvent::Reasoning(r))) => {
                        w.append(RunEvent::Reasoning { text: r }).await;
                    }
                    Some(Ok(ProviderEvent::Usage(u))) => {
                        usage = Some(u);
                        w.append(RunEvent::Usage {
                            prompt_tokens: u.prompt_tokens,
                            completion_tokens: u.completion_tokens,
                            estimated: u.estimated,
                        })
                        .await;
                    }
                    Some(Ok(ProviderEvent::Finished(reason))) => finish_reason = Some(reason),
                    Some(Err(e)) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
        },
    }

    let (text, lease_lost) = {
        let mut p = lock();
        (std::mem::take(&mut p.text), p.lease_lost)
    };
    if lease_lost {
        // Another instance declared this run dead and ended it; it is theirs now.
        return;
    }
    let (status, reason) = match (stopped_by, &failure, &finish_reason) {
        (Some("stopped"), _, _) => (RunStatus::Stopped, "stopped".to_string()),
        (Some(_), _, _) => (RunStatus::Interrupted, "shutdown".to_string()),
        // A failure after text keeps the text and can be continued.
        (None, Some(_), _) if !text.is_empty() => {
            (RunStatus::Interrupted, "provider_error".to_string())
        }
        (None, Some(_), _) => (RunStatus::Failed, "provider_error".to_string()),
        (None, None, Some(r)) => (RunStatus::Complete, r.clone()),
        (None, None, None) => (RunStatus::Interrupted, "stream_ended".to_string()),
    };
    if let Some(err) = &failure {
        tracing::warn!(run = %job.run_id, error = %err, status = status.as_str(), "run ended with a provider error");
    }
    if w.degraded {
        w.append(RunEvent::Snapshot { text: text.clone() }).await;
    }
    let outcome = RunOutcome {
        status,
        text,
        seq: w.seq as i64 + 1,
        finish_reason: Some(reason.clone()),
        error: failure.clone(),
        prompt_tokens: usage.map(|u| u.prompt_tokens as i64),
        completion_tokens: usage.map(|u| u.completion_tokens as i64),
    };
    match inner.store.finish_run(&job.run_id, &owner, &outcome).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run = %job.run_id, "run was already ended elsewhere");
            return;
        }
        Err(e) => {
            // The lease will lapse and the sweeper will interrupt the run with its checkpoint.
            tracing::error!(run = %job.run_id, error = %e, "could not save the end of the run");
            return;
        }
    }
    w.append(RunEvent::Finished {
        status: status.as_str().to_string(),
        reason,
        error: failure,
    })
    .await;
    tracing::info!(run = %job.run_id, status = status.as_str(), "run ended");
}
