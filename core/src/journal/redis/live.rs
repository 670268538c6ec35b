//! Live delivery: one subscription per instance to the channel every writer publishes
//! its stored entries on, fanned out to the local readers of each run.
//!
//! A published message is the entries one writer stored in one batch, one per line:
//! `RUN SEQ JSON` (JSON never holds a raw newline). Entries of runs no local reader
//! follows are skipped before their JSON is read. Redis pub/sub delivers a message to a
//! subscriber that is connected, in publish order, or drops the connection: so when
//! the subscription is lost (the connection ends, or a ping goes unanswered) it is made
//! again and then every local reader refills from its stream, which holds whatever was
//! published meanwhile.

use super::{Inner, Live};
use crate::journal::{JournalEntry, RunEvent};
use futures::StreamExt;
use redis::aio::PubSub;
use redis::{Client, RedisResult, Value};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often an idle subscription is checked with a ping (a silently dead connection
/// delivers nothing and reports nothing).
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection subscribed to `channel` (subscribed when this returns).
pub(super) async fn subscribe(client: &Client, channel: &str) -> RedisResult<PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Delivers published entries to local readers until the journal is dropped.
pub(super) async fn listen(inner: Weak<Inner>, client: Client, channel: String, first: PubSub) {
    let mut next = Some(first);
    loop {
        let pubsub = match next.take() {
            Some(p) => p,
            None => match subscribe(&client, &channel).await {
                Ok(p) => {
                    let Some(journal) = inner.upgrade() else {
                        return;
                    };
                    // What was published while no subscription was up is in the streams.
                    journal.resync_all();
                    p
                }
                Err(e) => {
                    if inner.strong_count() == 0 {
                        return;
                    }
                    tracing::warn!(error = %e, "journal: cannot subscribe to live entries; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Some(journal) = inner.upgrade() else { return };
                    dispatch(&journal, msg.get_payload_bytes());
                }
                _ = ping.tick() => {
                    if inner.strong_count() == 0 {
                        return;
                    }
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<Value>()).await {
                        Ok(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        }
        tracing::warn!("journal: the live subscription was lost; subscribing again");
    }
}

/// Hands the entries of one published batch to the local readers of their runs.
pub(super) fn dispatch(journal: &Inner, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        tracing::warn!("journal: skipping a published batch that is not UTF-8");
        return;
    };
    let mut follows = journal.follows.lock().unwrap_or_else(|e| e.into_inner());
    if follows.is_empty() {
        return;
    }
    let mut lines = text.lines().peekable();
    // The batch's send time, when the writer is of this version.
    let sent_us = lines
        .next_if(|line| line.starts_with("t "))
        .and_then(|line| line[2..].parse::<u64>().ok());
    let now_us = chorus_model::time::now_us();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let (Some(run), Some(seq), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            tracing::warn!("journal: skipping a corrupt published entry");
            continue;
        };
        let Some(follow) = follows.get_mut(run) else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            tracing::warn!(run, "journal: skipping a published entry without a seq");
            continue;
        };
        if seq <= follow.cursor {
            continue;
        }
        let event: RunEvent = match serde_json::from_str(json) {
            Ok(event) => event,
            Err(e) => {
                // The reader finds the gap and reads the entry from the stream.
                tracing::warn!(run, seq, error = %e, "journal: skipping a corrupt published entry");
                continue;
            }
        };
        if let Some(sent) = sent_us.filter(|t| *t >= follow.since_us) {
            crate::telemetry::metrics::journal_fanout().record(std::time::Duration::from_micros(
                now_us.saturating_sub(sent),
            ));
        }
        follow.cursor = seq;
        // No receiver is no error: the last reader is just leaving.
        let _ = follow
            .tx
            .send(Live::Entry(Arc::new(JournalEntry { seq, event })));
    }
}
