//! The message sink of one Discord channel (a DM, or the thread of a conversation)
//! for core's progressive renderer: posts with a Stop button, content edits, typing,
//! and the buttons of an ended reply; 429s go back to the renderer with their wait.

use crate::commands;
use crate::controls;
use crate::rest::Rest;
use chorus_core::Identity;
use chorus_core::chat::{MessageSink, SinkError, SinkFactory, SinkLimits};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Channels remembered as DMs (or not) before the memo starts over.
const MAX_REMEMBERED_CHANNELS: usize = 10_000;

/// Discord's channel type of a DM.
const DM: u64 = 1;

/// Nobody is pinged by what a model writes (`@everyone`, a role, a user).
fn no_mentions() -> Value {
    json!({ "parse": [] })
}

/// Posts into one channel (a binding's channel key is its channel id).
pub struct DiscordSink {
    rest: Rest,
    channel: u64,
    limits: SinkLimits,
    /// The message of this reply that shows the Stop button now (the newest part).
    stop_on: Mutex<Option<String>>,
}

impl DiscordSink {
    fn path(&self) -> String {
        format!("/channels/{}/messages", self.channel)
    }

    async fn set_components(&self, message_id: &str, components: Value) -> Result<(), SinkError> {
        self.rest
            .call(
                Method::PATCH,
                &format!("{}/{message_id}", self.path()),
                Some(&json!({ "components": components })),
            )
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl MessageSink for DiscordSink {
    fn limits(&self) -> SinkLimits {
        self.limits
    }

    async fn post(&self, markdown: &str) -> Result<String, SinkError> {
        let body = json!({
            "content": markdown,
            "components": controls::streaming(),
            "allowed_mentions": no_mentions(),
        });
        let message = self
            .rest
            .call(Method::POST, &self.path(), Some(&body))
            .await?;
        let id = message["id"]
            .as_str()
            .ok_or_else(|| SinkError::Failed("discord: a posted message without an id".into()))?
            .to_string();
        // The Stop button moves to the newest part.
        let previous = self
            .stop_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(id.clone());
        if let Some(previous) = previous
            && let Err(e) = self.set_components(&previous, controls::none()).await
        {
            tracing::debug!(message = %previous, error = %e, "discord: cannot take the Stop button off an earlier part");
        }
        Ok(id)
    }

    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError> {
        // Components are left as they are: an edit of the content keeps them.
        let body = json!({ "content": markdown, "allowed_mentions": no_mentions() });
        self.rest
            .call(
                Method::PATCH,
                &format!("{}/{message_id}", self.path()),
                Some(&body),
            )
            .await
            .map(|_| ())
    }

    async fn typing(&self, on: bool) -> Result<(), SinkError> {
        // Discord's typing notice ends by itself (10 s) or when the bot posts.
        if !on {
            return Ok(());
        }
        self.rest
            .call(
                Method::POST,
                &format!("/channels/{}/typing", self.channel),
                None,
            )
            .await
            .map(|_| ())
    }

    async fn ended(&self, parts: &[(String, String)], continuable: bool) -> Result<(), SinkError> {
        let Some(((last, _), earlier)) = parts.split_last() else {
            return Ok(());
        };
        let stop_on = self
            .stop_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Parts this sink did not post (a restart) may still show a Stop button.
        for (id, _) in earlier {
            if stop_on.is_none() || stop_on.as_deref() == Some(id.as_str()) {
                self.set_components(id, controls::none()).await?;
            }
        }
        self.set_components(last, controls::ended(continuable))
            .await
    }
}

/// Builds the sink of a binding from its channel key (the channel id).
pub struct DiscordSinkFactory {
    rest: Rest,
    limits: SinkLimits,
    /// Channels known to be DMs (`true`) or not.
    kinds: Mutex<std::collections::HashMap<u64, bool>>,
}

impl DiscordSinkFactory {
    pub fn new(rest: Rest, limits: SinkLimits) -> Self {
        Self {
            rest,
            limits,
            kinds: Mutex::default(),
        }
    }

    /// The REST client the sinks post with (interaction answers use it too).
    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    /// Remembers what kind of channel `channel` is (from an event that said so).
    pub fn remember(&self, channel: u64, is_dm: bool) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        if kinds.len() >= MAX_REMEMBERED_CHANNELS {
            kinds.clear();
        }
        kinds.insert(channel, is_dm);
    }

    fn known(&self, channel: u64) -> Option<bool> {
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&channel)
            .copied()
    }

    fn sink_of(&self, channel: u64) -> Arc<DiscordSink> {
        Arc::new(DiscordSink {
            rest: self.rest.clone(),
            channel,
            limits: self.limits,
            stop_on: Mutex::new(None),
        })
    }
}

/// The channel id of a binding key; `None` for another surface's key.
pub fn channel_of_key(key: &str) -> Option<u64> {
    key.parse::<u64>().ok().filter(|id| *id > 0)
}

#[async_trait::async_trait]
impl SinkFactory for DiscordSinkFactory {
    /// A stopped reply shows Continue and Regenerate buttons: the note names them.
    fn continue_hint(&self, _prefix: &str) -> String {
        "press **Continue** (or use `/continue`) to go on, or **Regenerate** for a new answer"
            .into()
    }

    /// The buttons and slash commands ([`commands::command_hint`]).
    fn command_hint(&self, prefix: &str, name: &str, args: &str) -> String {
        commands::command_hint(prefix, name, args)
    }

    /// The slash commands and buttons for the list ([`commands::help_text`], what
    /// `/help` answers too); one command's help as core writes it.
    fn help(&self, prefix: &str, topic: Option<&str>) -> String {
        match topic {
            None => commands::help_text(prefix),
            Some(_) => chorus_core::chat::help_text(prefix, topic),
        }
    }

    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        let Some(channel) = channel_of_key(channel_key) else {
            tracing::debug!(channel_key, "discord: not a Discord channel key");
            return None;
        };
        Some(self.sink_of(channel))
    }

    /// A DM channel: only the person and the bot read it.
    async fn is_private(&self, channel_key: &str) -> bool {
        let Some(channel) = channel_of_key(channel_key) else {
            return false;
        };
        if let Some(is_dm) = self.known(channel) {
            return is_dm;
        }
        match self
            .rest
            .call(Method::GET, &format!("/channels/{channel}"), None)
            .await
        {
            Ok(c) => {
                let is_dm = c["type"].as_u64() == Some(DM);
                self.remember(channel, is_dm);
                is_dm
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "discord: cannot tell whether a channel is a DM");
                false
            }
        }
    }

    /// The bot's DM channel with `user` (opened, or the existing one Discord returns).
    async fn private_sink(&self, user: &Identity) -> Result<Arc<dyn MessageSink>, SinkError> {
        let body = json!({ "recipient_id": user.external_id });
        let dm = self
            .rest
            .call(Method::POST, "/users/@me/channels", Some(&body))
            .await?;
        let channel = dm["id"]
            .as_str()
            .and_then(channel_of_key)
            .ok_or_else(|| SinkError::Failed("discord: a DM channel without an id".into()))?;
        self.remember(channel, true);
        Ok(self.sink_of(channel))
    }
}
