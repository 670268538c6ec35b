//! A recording message board standing in for a chat platform in tests (feature
//! `test-util`): what a platform keeps — messages, their edits and when they came,
//! typing notices — with rate limits and failures on demand. Core's renderer tests
//! use it, and a surface's tests can drive the kit with it.
//!
//! ```
//! use chorus_core::chat::testing::RecordingBoard;
//! use chorus_core::chat::{MessageSink, SinkLimits};
//! use std::time::Duration;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let board = RecordingBoard::new();
//! let sink = board.sink(SinkLimits {
//!     max_bytes: 100,
//!     min_edit_interval: Duration::ZERO,
//!     max_edits_per_message: 10,
//! });
//! let id = sink.post("hello").await.unwrap();
//! sink.edit(&id, "hello, world").await.unwrap();
//! assert_eq!(board.texts(), ["hello, world"]);
//! # });
//! ```

use super::{MessageSink, SinkError, SinkFactory, SinkLimits};
use chorus_store::Identity;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One message on the board.
#[derive(Clone, Debug)]
pub struct RecordedMessage {
    /// The id the sink returned for it (`$m0`, `$m1`, …).
    pub id: String,
    /// The channel key of the sink that posted it (empty for [`RecordingBoard::sink`]).
    pub channel: String,
    /// Its current text.
    pub text: String,
    /// When each edit came.
    pub edits: Vec<Instant>,
}

/// What the board holds; read and set up through [`RecordingBoard::lock`].
#[derive(Debug, Default)]
pub struct Board {
    pub messages: Vec<RecordedMessage>,
    /// When each post or edit was asked for (refused ones included).
    pub calls: Vec<Instant>,
    /// Post or edit calls to refuse with [`SinkError::RateLimited`], by call number
    /// (1-based).
    pub limited: Vec<usize>,
    /// The `retry_after` of those refusals.
    pub retry_after: Duration,
    /// Post or edit calls to refuse with [`SinkError::Failed`], by call number.
    pub failing: Vec<usize>,
    /// Typing notices asked for (on or off).
    pub typing: usize,
    /// The channels the factory calls private (direct chats).
    pub private_channels: Vec<String>,
    /// Whether the factory's private channels cannot be opened.
    pub no_private: bool,
    /// Every [`MessageSink::ended`] call: the reply's parts and whether it was
    /// continuable.
    pub ended: Vec<(Vec<String>, bool)>,
}

/// A shared [`Board`] and the sinks that write on it.
#[derive(Clone, Debug, Default)]
pub struct RecordingBoard(Arc<Mutex<Board>>);

impl RecordingBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// A board refusing the post or edit calls numbered in `calls` (1-based) with a
    /// rate limit of `retry_after`.
    pub fn rate_limited(calls: Vec<usize>, retry_after: Duration) -> Self {
        Self(Arc::new(Mutex::new(Board {
            limited: calls,
            retry_after,
            ..Board::default()
        })))
    }

    /// The board itself, to read or to set up.
    pub fn lock(&self) -> MutexGuard<'_, Board> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current text of every message, in posting order.
    pub fn texts(&self) -> Vec<String> {
        self.lock()
            .messages
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }

    /// A sink writing on this board with `limits`.
    pub fn sink(&self, limits: SinkLimits) -> RecordingSink {
        self.sink_for("", limits)
    }

    fn sink_for(&self, channel: &str, limits: SinkLimits) -> RecordingSink {
        RecordingSink {
            board: self.clone(),
            channel: channel.to_string(),
            limits,
        }
    }

    /// A sink factory whose every binding writes on this board with `limits`.
    pub fn factory(&self, limits: SinkLimits) -> Arc<dyn SinkFactory> {
        Arc::new(RecordingFactory {
            board: self.clone(),
            limits,
        })
    }
}

/// A [`MessageSink`] writing on a [`RecordingBoard`]. It panics on a post or edit
/// longer than its own `max_bytes`: the kit must never ask for one.
#[derive(Clone, Debug)]
pub struct RecordingSink {
    board: RecordingBoard,
    channel: String,
    limits: SinkLimits,
}

impl RecordingSink {
    fn call(&self, markdown: &str, what: &str) -> Result<MutexGuard<'_, Board>, SinkError> {
        assert!(
            markdown.len() <= self.limits.max_bytes,
            "oversized {what}: {} bytes",
            markdown.len()
        );
        let mut b = self.board.lock();
        b.calls.push(Instant::now());
        let n = b.calls.len();
        if b.limited.contains(&n) {
            return Err(SinkError::RateLimited {
                retry_after: b.retry_after,
            });
        }
        if b.failing.contains(&n) {
            return Err(SinkError::Failed(format!("call {n} refused")));
        }
        Ok(b)
    }
}

#[async_trait::async_trait]
impl MessageSink for RecordingSink {
    fn limits(&self) -> SinkLimits {
        self.limits
    }

    async fn post(&self, markdown: &str) -> Result<String, SinkError> {
        let mut b = self.call(markdown, "post")?;
        let id = format!("$m{}", b.messages.len());
        b.messages.push(RecordedMessage {
            id: id.clone(),
            channel: self.channel.clone(),
            text: markdown.to_string(),
            edits: Vec::new(),
        });
        Ok(id)
    }

    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError> {
        let mut b = self.call(markdown, "edit")?;
        let m = b
            .messages
            .iter_mut()
            .find(|m| m.id == message_id)
            .ok_or_else(|| SinkError::Failed(format!("no message {message_id}")))?;
        m.text = markdown.to_string();
        m.edits.push(Instant::now());
        Ok(())
    }

    async fn typing(&self, _on: bool) -> Result<(), SinkError> {
        self.board.lock().typing += 1;
        Ok(())
    }

    async fn ended(&self, parts: &[(String, String)], continuable: bool) -> Result<(), SinkError> {
        let ids = parts.iter().map(|(id, _)| id.clone()).collect();
        self.board.lock().ended.push((ids, continuable));
        Ok(())
    }
}

/// The channel of the private sink a board's factory opens for `user`.
pub fn private_channel(user: &Identity) -> String {
    format!("private|{}", user.external_id)
}

struct RecordingFactory {
    board: RecordingBoard,
    limits: SinkLimits,
}

#[async_trait::async_trait]
impl SinkFactory for RecordingFactory {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        Some(Arc::new(self.board.sink_for(channel_key, self.limits)))
    }

    async fn is_private(&self, channel_key: &str) -> bool {
        let b = self.board.lock();
        b.private_channels.iter().any(|c| c == channel_key)
    }

    async fn private_sink(&self, user: &Identity) -> Result<Arc<dyn MessageSink>, SinkError> {
        if self.board.lock().no_private {
            return Err(SinkError::Failed("no private channel".into()));
        }
        Ok(Arc::new(
            self.board.sink_for(&private_channel(user), self.limits),
        ))
    }
}
