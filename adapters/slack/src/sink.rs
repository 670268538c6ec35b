//! The message sink of one Slack thread: `chat.postMessage` and paced `chat.update`
//! for the core's progressive renderer, a Stop button while the reply streams and
//! Continue/Regenerate once it ended, and the assistant thread's status line instead
//! of a typing notice.

use crate::api::{Buttons, SlackApi};
use crate::key::{Place, message_id, parse_message_id};
use chorus_core::chat::{MessageSink, SinkError, SinkFactory, SinkLimits};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The status an assistant thread shows until the first text arrives.
pub const THINKING: &str = "is thinking…";

/// Assistant threads (Slack's AI-app split view) seen since the start, by binding
/// key: their sinks show a status line while waiting.
#[derive(Clone, Default)]
pub struct AssistantThreads(Arc<Mutex<HashSet<String>>>);

impl AssistantThreads {
    pub fn insert(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }
}

/// Posts into one place (a thread, or the top of a DM).
pub struct SlackSink {
    api: SlackApi,
    place: Place,
    assistant: bool,
    limits: SinkLimits,
}

#[async_trait::async_trait]
impl MessageSink for SlackSink {
    fn limits(&self) -> SinkLimits {
        self.limits
    }

    async fn post(&self, markdown: &str) -> Result<String, SinkError> {
        let ts = self
            .api
            .post(
                &self.place.channel,
                self.place.thread_ts.as_deref(),
                markdown,
                Buttons::Stop,
            )
            .await?;
        Ok(message_id(&self.place.channel, &ts))
    }

    async fn edit(&self, id: &str, markdown: &str) -> Result<(), SinkError> {
        let (channel, ts) = parse_message_id(id)
            .ok_or_else(|| SinkError::Failed(format!("not a Slack message id {id:?}")))?;
        self.api.update(channel, ts, markdown, Buttons::Stop).await
    }

    /// Slack shows no typing notice for apps; an assistant thread shows a status.
    async fn typing(&self, on: bool) -> Result<(), SinkError> {
        let (true, Some(thread)) = (self.assistant, &self.place.thread_ts) else {
            return Ok(());
        };
        let status = if on { THINKING } else { "" };
        self.api.set_status(&self.place.channel, thread, status).await
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
            self.api.update(channel, ts, text, buttons).await?;
        }
        Ok(())
    }
}

/// Builds the sink of a binding from its key.
pub struct SlackSinkFactory {
    api: SlackApi,
    assistant: AssistantThreads,
    limits: SinkLimits,
}

impl SlackSinkFactory {
    pub fn new(api: SlackApi, assistant: AssistantThreads, limits: SinkLimits) -> Self {
        Self {
            api,
            assistant,
            limits,
        }
    }
}

#[async_trait::async_trait]
impl SinkFactory for SlackSinkFactory {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        let place = Place::parse(channel_key)?;
        Some(Arc::new(SlackSink {
            api: self.api.clone(),
            assistant: self.assistant.contains(channel_key),
            place,
            limits: self.limits,
        }))
    }

    /// A DM with the app: only its one person reads it.
    async fn is_private(&self, channel_key: &str) -> bool {
        Place::parse(channel_key).is_some_and(|p| p.is_direct())
    }
}
