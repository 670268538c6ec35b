//! The message sink of one Slack thread for the core's progressive renderer: Slack's
//! native streaming (`chat.startStream`, then `chat.appendStream` of what the text
//! grew by, `chat.stopStream` at the end) in threads where it is on and allowed, and
//! `chat.postMessage` plus paced `chat.update` otherwise — also to pick up a stream
//! Slack expired, without losing text; a Stop button while the reply streams and
//! Continue/Regenerate once it ended (one-off answers get none), and the assistant
//! thread's status line instead of a typing notice.

use crate::api::{Buttons, SlackApi, error_code};
use crate::forms;
use crate::key::{Place, message_id, parse_message_id};
use crate::threads::Threads;
use chorus_core::chat::{MessageSink, SinkError, SinkFactory, SinkLimits};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The status an assistant thread shows until the first text arrives.
pub const THINKING: &str = "is thinking…";

/// Posts into one place (a thread, or the top of a DM).
pub struct SlackSink {
    api: SlackApi,
    place: Place,
    threads: Threads,
    /// Whether the place is an assistant thread (it shows a status while waiting),
    /// looked up once.
    assistant: OnceCell<bool>,
    limits: SinkLimits,
    /// The person a native stream is for, looked up once; `None`: no native streaming
    /// here (off, refused before, not in a thread, or nobody known to be asking).
    recipient: OnceCell<Option<String>>,
    /// Set when Slack refused to start a stream: the surface edits from then on.
    refused: Arc<AtomicBool>,
    /// Native streaming is on (messages of an earlier process may be open streams).
    native: bool,
    /// The messages being streamed natively, with the text they show.
    streams: Mutex<HashMap<String, String>>,
}

impl SlackSink {
    async fn post_with(&self, markdown: &str, buttons: Buttons) -> Result<String, SinkError> {
        let ts = self
            .api
            .post(
                &self.place.channel,
                self.place.thread_ts.as_deref(),
                markdown,
                buttons,
            )
            .await?;
        Ok(message_id(&self.place.channel, &ts))
    }

    fn stream_text(&self, id: &str) -> Option<String> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn set_stream(&self, id: &str, text: Option<&str>) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        match text {
            Some(text) => streams.insert(id.to_string(), text.to_string()),
            None => streams.remove(id),
        };
    }

    /// Who a native stream here is for: the person who started the binding's last
    /// reply (known to the store across restarts), when native streaming is on.
    async fn recipient(&self) -> Option<&str> {
        self.recipient
            .get_or_init(|| async {
                if !self.native || self.place.thread_ts.is_none() {
                    return None;
                }
                self.threads.asker(&self.place.key()).await
            })
            .await
            .as_deref()
    }

    /// Starts a native stream for a new message, when this place allows one; `None`
    /// when it does not (or Slack refused: the reply is then edited).
    async fn try_start_stream(&self, markdown: &str) -> Result<Option<String>, SinkError> {
        let (Some(user), Some(thread)) = (self.recipient().await, &self.place.thread_ts) else {
            return Ok(None);
        };
        if self.refused.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let started = self
            .api
            .start_stream(
                &self.place.channel,
                thread,
                (&self.place.team, user),
                markdown,
            )
            .await;
        match started {
            Ok(ts) => {
                let id = message_id(&self.place.channel, &ts);
                self.set_stream(&id, Some(markdown));
                Ok(Some(id))
            }
            Err(e @ SinkError::RateLimited { .. }) => Err(e),
            Err(e) => {
                tracing::warn!(channel = %self.place.channel, error = %e, "slack: native streaming refused; streaming by edits from now on");
                self.refused.store(true, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// `chat.update`; when Slack refuses it for a message this sink does not know as
    /// a stream (one a previous process streamed, still open), the stream is ended
    /// first and the update tried again.
    async fn update(
        &self,
        channel: &str,
        ts: &str,
        markdown: &str,
        buttons: Buttons,
    ) -> Result<(), SinkError> {
        match self.api.update(channel, ts, markdown, buttons).await {
            Err(SinkError::Failed(e)) if self.native => {
                tracing::debug!(channel, ts, error = %e, "slack: update refused; ending a stream left open and trying again");
                match self.api.stop_stream(channel, ts).await {
                    Ok(()) => {}
                    Err(stop) if error_code(&stop) == Some(NOT_STREAMING) => {
                        return Err(SinkError::Failed(e));
                    }
                    Err(stop) => return Err(stop),
                }
                self.api.update(channel, ts, markdown, buttons).await
            }
            other => other,
        }
    }

    /// Ends the native stream of `id`, if it is one (an expired one is already over).
    async fn stop_stream(&self, id: &str, channel: &str, ts: &str) -> Result<(), SinkError> {
        if self.stream_text(id).is_none() {
            return Ok(());
        }
        match self.api.stop_stream(channel, ts).await {
            Ok(()) => {}
            Err(e) if error_code(&e) == Some(NOT_STREAMING) => {}
            Err(e) => return Err(e),
        }
        self.set_stream(id, None);
        Ok(())
    }
}

/// What Slack answers about a stream that has ended (they expire after minutes).
const NOT_STREAMING: &str = "message_not_in_streaming_state";

#[async_trait::async_trait]
impl MessageSink for SlackSink {
    fn limits(&self) -> SinkLimits {
        self.limits
    }

    /// A reply's message: a native stream where allowed, else a message with Stop.
    async fn post(&self, markdown: &str) -> Result<String, SinkError> {
        if let Some(id) = self.try_start_stream(markdown).await? {
            return Ok(id);
        }
        self.post_with(markdown, Buttons::Stop).await
    }

    /// A command's answer or a notice: a plain message without buttons.
    async fn post_once(&self, markdown: &str) -> Result<String, SinkError> {
        self.post_with(markdown, Buttons::None).await
    }

    async fn edit(&self, id: &str, markdown: &str) -> Result<(), SinkError> {
        let (channel, ts) = parse_message_id(id)
            .ok_or_else(|| SinkError::Failed(format!("not a Slack message id {id:?}")))?;
        if let Some(shown) = self.stream_text(id) {
            match markdown.strip_prefix(shown.as_str()) {
                Some("") => return Ok(()),
                Some(delta) => match self.api.append_stream(channel, ts, delta).await {
                    Ok(()) => {
                        self.set_stream(id, Some(markdown));
                        return Ok(());
                    }
                    // Expired: the message keeps what it showed; an edit brings the rest.
                    Err(e) if error_code(&e) == Some(NOT_STREAMING) => {
                        tracing::info!(
                            channel,
                            ts,
                            "slack: the stream expired; going on by editing"
                        );
                        self.set_stream(id, None);
                    }
                    Err(e) => return Err(e),
                },
                // Not an extension (a tool's status line went away): end the stream
                // and edit.
                None => self.stop_stream(id, channel, ts).await?,
            }
        }
        self.update(channel, ts, markdown, Buttons::Stop).await
    }

    /// Slack shows no typing notice for apps; an assistant thread shows a status.
    async fn typing(&self, on: bool) -> Result<(), SinkError> {
        let Some(thread) = &self.place.thread_ts else {
            return Ok(());
        };
        let assistant = *self
            .assistant
            .get_or_init(|| async { self.threads.is_assistant(&self.place.key()).await })
            .await;
        if !assistant {
            return Ok(());
        }
        let status = if on { THINKING } else { "" };
        self.api
            .set_status(&self.place.channel, thread, status)
            .await
    }

    /// The last part gets Continue (when it can go on) and Regenerate; the parts
    /// before it lose their Stop button.
    async fn ended(&self, parts: &[(String, String)], continuable: bool) -> Result<(), SinkError> {
        let last = parts.len().saturating_sub(1);
        for (i, (id, text)) in parts.iter().enumerate() {
            let Some((channel, ts)) = parse_message_id(id) else {
                continue;
            };
            let buttons = if i == last {
                Buttons::Ended { continuable }
            } else {
                Buttons::None
            };
            self.stop_stream(id, channel, ts).await?;
            self.update(channel, ts, text, buttons).await?;
        }
        Ok(())
    }
}

/// Builds the sink of a binding from its key.
pub struct SlackSinkFactory {
    api: SlackApi,
    threads: Threads,
    limits: SinkLimits,
    native: bool,
    refused: Arc<AtomicBool>,
}

impl SlackSinkFactory {
    /// Sinks that stream natively in threads when `native` (and Slack allows it),
    /// and by editing otherwise.
    pub fn new(api: SlackApi, threads: Threads, limits: SinkLimits, native: bool) -> Self {
        Self {
            api,
            threads,
            limits,
            native,
            refused: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl SinkFactory for SlackSinkFactory {
    /// A stopped reply shows Continue and Regenerate buttons: the note names them.
    fn continue_hint(&self, prefix: &str) -> String {
        format!(
            "press **Continue** (or use `{prefix} continue`) to go on, or **Regenerate** for a new answer"
        )
    }

    /// The buttons and `/chorus` ([`forms::command_hint`]).
    fn command_hint(&self, prefix: &str, name: &str, args: &str) -> String {
        forms::command_hint(prefix, name, args)
    }

    /// The `/chorus` commands and the buttons ([`forms::help`]).
    fn help(&self, prefix: &str, topic: Option<&str>) -> String {
        forms::help(prefix, topic)
    }

    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        let place = Place::parse(channel_key)?;
        Some(Arc::new(SlackSink {
            api: self.api.clone(),
            threads: self.threads.clone(),
            assistant: OnceCell::new(),
            place,
            limits: self.limits,
            recipient: OnceCell::new(),
            refused: self.refused.clone(),
            native: self.native,
            streams: Mutex::default(),
        }))
    }

    /// A DM with the app: only its one person reads it.
    async fn is_private(&self, channel_key: &str) -> bool {
        Place::parse(channel_key).is_some_and(|p| p.is_direct())
    }
}
