//! Carrying a [`ChatOutcome`] out on a surface: a reply posted in the binding's
//! thread, split at the surface's limit and waited through rate limits, or a run handed
//! to the surface's renderers after its notice. Every surface does this the same way.

use super::ChatOutcome;
use super::render::{MessageSink, RenderHub, SinkError};
use super::split::split_message;
use chorus_store::Identity;

/// Attempts at posting one part of a direct reply when the platform rate-limits it
/// (as many as the renderer gives a message that must land: a burst of commands
/// shares one limit).
pub const REPLY_ATTEMPTS: u32 = 12;

/// What a shared thread is told when private text could not reach its owner.
pub const NOT_SENT_PRIVATELY: &str = "⚠️ I could not send you that privately, and it is not for a shared room: write to me in a direct chat and ask there.";

/// Posts `markdown` through `sink`, split at its `max_bytes` (fences closed and
/// reopened across parts), waiting out [`SinkError::RateLimited`] up to
/// [`REPLY_ATTEMPTS`] times per part. Returns the posted parts' ids; stops at the first
/// part that cannot be posted.
pub async fn post_reply(sink: &dyn MessageSink, markdown: &str) -> Result<Vec<String>, SinkError> {
    post_reply_on(None, sink, markdown).await
}

/// [`post_reply`], counting its rate-limit waits for `surface` when given.
async fn post_reply_on(
    surface: Option<&str>,
    sink: &dyn MessageSink,
    markdown: &str,
) -> Result<Vec<String>, SinkError> {
    let max = sink.limits().max_bytes;
    let mut ids = Vec::new();
    for part in split_message(markdown, max) {
        let mut attempt = 1;
        loop {
            match sink.post_once(&part).await {
                Ok(id) => {
                    ids.push(id);
                    break;
                }
                Err(SinkError::RateLimited { retry_after }) if attempt < REPLY_ATTEMPTS => {
                    tracing::debug!(?retry_after, attempt, "reply rate-limited; waiting");
                    if let Some(surface) = surface {
                        crate::telemetry::metrics::rate_limit_wait(surface, retry_after);
                    }
                    tokio::time::sleep(retry_after).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(ids)
}

impl RenderHub {
    /// Does what core asked on the binding `channel_key`: posts a reply, or posts the
    /// notice (if any) and then starts the binding's renderer for the run. A reply that
    /// cannot be posted (no sink, a failure, rate limits past [`REPLY_ATTEMPTS`]) is
    /// logged, never retried later.
    pub async fn deliver(&self, channel_key: &str, outcome: ChatOutcome) {
        match outcome {
            ChatOutcome::Reply(markdown) => self.reply(channel_key, &markdown).await,
            ChatOutcome::Render { run_id, notice } => {
                if let Some(notice) = notice {
                    self.reply(channel_key, &notice).await;
                }
                self.render(channel_key, run_id);
            }
            ChatOutcome::Nothing => {}
            ChatOutcome::Private { to, text, notice } => {
                self.deliver_private(channel_key, &to, &text, &notice).await
            }
        }
    }

    /// Private text: a reply in a private channel; elsewhere sent through the
    /// surface's private channel with `to`, and `notice` in the thread. Never posted
    /// in the thread: when it cannot be sent privately, the thread says so.
    async fn deliver_private(&self, channel_key: &str, to: &Identity, text: &str, notice: &str) {
        if self.is_private(channel_key).await {
            return self.reply(channel_key, text).await;
        }
        let sent = match self.private_sink(to).await {
            Ok(sink) => post_reply_on(Some(self.surface()), sink.as_ref(), text)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => self.reply(channel_key, notice).await,
            Err(e) => {
                tracing::warn!(surface = %self.surface(), channel = %channel_key, error = %e, "cannot send a private reply");
                self.reply(channel_key, NOT_SENT_PRIVATELY).await;
            }
        }
    }

    /// Posts a one-off reply in the binding's thread (see [`post_reply`]).
    pub async fn reply(&self, channel_key: &str, markdown: &str) {
        let Some(sink) = self.sink(channel_key) else {
            tracing::debug!(surface = %self.surface(), channel = %channel_key, "no sink for the binding; not replying");
            return;
        };
        if let Err(e) = post_reply_on(Some(self.surface()), sink.as_ref(), markdown).await {
            tracing::warn!(surface = %self.surface(), channel = %channel_key, error = %e, "cannot post a reply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::SinkLimits;
    use crate::chat::testing::RecordingBoard;
    use std::time::Duration;

    fn limits(max_bytes: usize) -> SinkLimits {
        SinkLimits {
            max_bytes,
            min_edit_interval: Duration::ZERO,
            max_edits_per_message: 10,
        }
    }

    #[tokio::test]
    async fn a_long_reply_is_posted_in_parts_within_the_limit() {
        let board = RecordingBoard::new();
        let sink = board.sink(limits(70));
        let text = format!("intro\n\n```\n{}```\nend", "line of code\n".repeat(12));
        let ids = post_reply(&sink, &text).await.unwrap();
        let texts = board.texts();
        assert!(texts.len() > 1, "{texts:?}");
        assert_eq!(ids.len(), texts.len());
        assert_eq!(texts, split_message(&text, 70));
        assert!(
            texts
                .iter()
                .all(|t| t.len() <= 70 && t.matches("```").count() % 2 == 0)
        );
    }

    #[tokio::test]
    async fn rate_limits_are_waited_out() {
        let board = RecordingBoard::rate_limited(vec![1, 2], Duration::from_millis(50));
        let sink = board.sink(limits(100));
        let started = std::time::Instant::now();
        post_reply(&sink, "hello").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(board.texts(), ["hello"]);
        assert_eq!(board.lock().calls.len(), 3);
    }

    #[tokio::test]
    async fn a_reply_gives_up_after_its_attempts_or_a_failure() {
        let limited = (1..=REPLY_ATTEMPTS as usize).collect();
        let board = RecordingBoard::rate_limited(limited, Duration::from_millis(1));
        let e = post_reply(&board.sink(limits(100)), "hello").await;
        assert!(matches!(e, Err(SinkError::RateLimited { .. })), "{e:?}");
        assert_eq!(board.lock().calls.len(), REPLY_ATTEMPTS as usize);
        assert!(board.texts().is_empty());

        let board = RecordingBoard::new();
        board.lock().failing = vec![2];
        let text = "a".repeat(50) + "\n" + &"b".repeat(50) + "\n" + &"c".repeat(50);
        let e = post_reply(&board.sink(limits(70)), &text).await;
        assert!(matches!(e, Err(SinkError::Failed(_))), "{e:?}");
        assert_eq!(board.texts().len(), 1, "stopped at the failed part");
    }
}
