//! The handlers: app mentions, DMs and assistant threads, button presses and the
//! `/chorus` slash command, turned into core chat calls whose outcomes the kit
//! delivers, each on the surface's tracked tasks. Socket Mode and the Events API
//! hand their events here alike; an event delivered twice (a retry, a redelivery
//! after a reconnect) is handled once.

use crate::allow::Allowlist;
use crate::api::SlackApi;
use crate::key::{Place, message_id};
use crate::threads::Threads;
use chorus_core::Core;
use chorus_core::Identity;
use chorus_core::chat::{ChatContext, ChatOutcome, Control, RenderHub, SurfaceHandle};
use slack_morphism::prelude::*;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// The surface's name in bindings and identities: the same key "Sign in with Slack"
/// gives its identities, so a person who signed in with Slack is one account here.
pub const SURFACE: &str = "slack";

/// How people type commands: the slash command.
pub const PREFIX: &str = "/chorus";

/// Events remembered to answer each once.
const SEEN_CAPACITY: usize = 10_000;

/// Suggested prompts an assistant thread opens with.
const PROMPTS: &[(&str, &str)] = &[
    ("What can you do?", "What can you help me with?"),
    ("Commands", "/chorus help"),
];

/// Ids recently handled (events, user messages), oldest forgotten first.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Whether `id` is new (and remembers it).
    fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// Everything the handlers share.
pub struct Bot {
    pub core: Core,
    pub hub: RenderHub,
    pub api: SlackApi,
    /// The app's bot user: its own messages are never questions.
    pub bot_user: String,
    pub allow: Allowlist,
    /// Assistant threads, who asked where (kept in the store across restarts).
    pub threads: Threads,
    /// The surface's tasks: every handler runs on it.
    pub surface: SurfaceHandle,
    seen: Mutex<Seen>,
}

/// The `/chorus` commands that act on a reply: Slack sends slash commands without
/// their thread (and refuses them inside threads), so typed in a channel they act
/// on the thread where the person last asked there.
const REPLY_COMMANDS: &[&str] = &["stop", "continue", "regenerate"];

/// The `/chorus` commands that bind the place they are typed in to a conversation.
const BINDING_COMMANDS: &[&str] = &["new", "resume"];

impl Bot {
    pub fn new(
        core: Core,
        hub: RenderHub,
        api: SlackApi,
        bot_user: String,
        allow: Allowlist,
        threads: Threads,
        surface: SurfaceHandle,
    ) -> Self {
        Self {
            core,
            hub,
            api,
            bot_user,
            allow,
            threads,
            surface,
            seen: Mutex::default(),
        }
    }

    /// Whether `id` was not handled before (a redelivered event or message is not).
    pub fn first_time(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_time(id)
    }

    /// An Events API callback: handled at once (the work runs on the surface's tasks),
    /// so the envelope or request is acknowledged without waiting for the model.
    pub fn on_push(self: &Arc<Self>, callback: SlackPushEventCallback) {
        if !self.first_time(&format!("event:{}", callback.event_id)) {
            tracing::debug!(event = %callback.event_id, "slack: event delivered again; already handled");
            return;
        }
        let team = callback.team_id.to_string();
        match callback.event {
            SlackEventCallbackBody::AppMention(mention) => {
                let origin = &mention.origin;
                let thread = origin
                    .thread_ts
                    .clone()
                    .unwrap_or_else(|| origin.ts.clone());
                let place = Place {
                    team,
                    channel: mention.channel.to_string(),
                    thread_ts: Some(thread.to_string()),
                };
                let text = mention.content.text.clone().unwrap_or_default();
                self.question(place, mention.user.to_string(), origin.ts.as_ref(), &text);
            }
            SlackEventCallbackBody::Message(message) => self.on_message(team, message),
            SlackEventCallbackBody::AssistantThreadStarted(started) => {
                let thread = started.assistant_thread;
                let place = Place {
                    team,
                    channel: thread.channel_id.to_string(),
                    thread_ts: Some(thread.thread_ts.to_string()),
                };
                if !self.admits(&place, thread.user_id.as_ref()) {
                    return;
                }
                let bot = self.clone();
                self.surface.spawn(async move {
                    bot.threads.mark_assistant(&place.key()).await;
                    let thread_ts = place.thread_ts.as_deref().unwrap_or_default();
                    if let Err(e) = bot
                        .api
                        .set_suggested_prompts(&place.channel, thread_ts, PROMPTS)
                        .await
                    {
                        tracing::warn!(channel = %place.channel, error = %e, "slack: cannot set the suggested prompts");
                    }
                });
            }
            other => tracing::debug!(event = ?other, "slack: ignoring an event"),
        }
    }

    /// Messages in a DM with the app (its top level, its threads, assistant threads);
    /// channel messages come as `app_mention` when they are for the app.
    fn on_message(self: &Arc<Self>, team: String, message: SlackMessageEvent) {
        let is_im = message
            .origin
            .channel_type
            .as_ref()
            .is_some_and(|t| t.0 == "im");
        if !is_im || message.subtype.is_some() || message.sender.bot_id.is_some() {
            return;
        }
        let (Some(user), Some(channel)) = (&message.sender.user, &message.origin.channel) else {
            return;
        };
        if user.0 == self.bot_user {
            return;
        }
        let place = Place {
            team,
            channel: channel.to_string(),
            thread_ts: message.origin.thread_ts.as_ref().map(ToString::to_string),
        };
        let text = message
            .content
            .as_ref()
            .and_then(|c| c.text.clone())
            .unwrap_or_default();
        self.question(place, user.to_string(), message.origin.ts.as_ref(), &text);
    }

    /// Whether `user` may use the app at `place` (logged at debug when not).
    fn admits(&self, place: &Place, user: &str) -> bool {
        let ok = user != self.bot_user
            && self.allow.allows_team(&place.team)
            && (place.is_direct() || self.allow.allows_channel(&place.channel))
            && self.allow.allows_user(user);
        if !ok {
            tracing::debug!(team = %place.team, channel = %place.channel, user, "slack: not on the allowlist; ignoring");
        }
        ok
    }

    /// A message for the app: the same message reaching it twice (a mention in a DM
    /// comes as a message and a mention) is one question.
    fn question(self: &Arc<Self>, place: Place, user: String, ts: &str, text: &str) {
        if !self.admits(&place, &user) || !self.first_time(&message_id(&place.channel, ts)) {
            return;
        }
        let question = clean_text(text, &self.bot_user);
        if question.is_empty() {
            return;
        }
        let bot = self.clone();
        self.surface.spawn(async move {
            let key = place.key();
            bot.threads.last_asked_at(&key, &user).await;
            bot.title_assistant_thread(&place, &key, &question).await;
            let ctx = context(&key, &user);
            tracing::debug!(channel = %key, user, "slack: message for the app");
            let outcome = bot.core.chat_text(&ctx, &question, &bot.hub).await;
            bot.deliver(&place, &user, outcome).await;
        });
    }

    /// The first question of an assistant thread becomes its title.
    async fn title_assistant_thread(&self, place: &Place, key: &str, question: &str) {
        let Some(thread) = &place.thread_ts else {
            return;
        };
        if !self.threads.is_assistant(key).await || !self.threads.first_title(key).await {
            return;
        }
        let title: String = question.chars().take(60).collect();
        if let Err(e) = self.api.set_title(&place.channel, thread, &title).await {
            tracing::warn!(channel = %place.channel, error = %e, "slack: cannot title the assistant thread");
        }
    }

    /// Carries an outcome out at `place`: private text is shown to its owner only
    /// (a DM reply, or an ephemeral message in a shared channel), the rest as usual.
    async fn deliver(&self, place: &Place, user: &str, outcome: ChatOutcome) {
        if matches!(outcome, ChatOutcome::Render { .. }) {
            self.threads.asked(&place.key(), user).await;
        }
        match outcome {
            ChatOutcome::Private { text, .. } if !place.is_direct() => {
                self.ephemeral(place, user, &text).await
            }
            other => self.hub.deliver(&place.key(), other).await,
        }
    }

    /// Shows `text` to `user` only, in the place's channel and thread.
    async fn ephemeral(&self, place: &Place, user: &str, text: &str) {
        if let Err(e) = self
            .api
            .post_ephemeral(&place.channel, user, place.thread_ts.as_deref(), text)
            .await
        {
            tracing::warn!(channel = %place.channel, error = %e, "slack: cannot post an ephemeral message");
        }
    }

    /// A button on one of the app's replies: the control of the reply's binding, for
    /// the person who pressed it (core refuses another person's thread; they are told
    /// so privately).
    pub fn on_interaction(self: &Arc<Self>, event: SlackInteractionEvent) {
        let SlackInteractionEvent::BlockActions(actions) = event else {
            return;
        };
        let Some(user) = actions.user.as_ref().map(|u| u.id.to_string()) else {
            return;
        };
        let SlackInteractionActionContainer::Message(container) = &actions.container else {
            return;
        };
        let Some(channel) = container
            .channel_id
            .as_ref()
            .or(actions.channel.as_ref().map(|c| &c.id))
            .map(ToString::to_string)
        else {
            return;
        };
        let controls: Vec<Control> = actions
            .actions
            .iter()
            .flatten()
            .filter_map(|a| Control::from_button_id(a.action_id.as_ref()))
            .collect();
        let Some(control) = controls.first().copied() else {
            return;
        };
        let target = message_id(&channel, container.message_ts.as_ref());
        let bot = self.clone();
        self.surface.spawn(async move {
            let Some(key) = bot.hub.channel_of_message(&target).await else {
                tracing::debug!(message = %target, "slack: a button on a message that is not a reply of the app");
                return;
            };
            let Some(place) = Place::parse(&key).filter(|p| p.channel == channel) else {
                return;
            };
            if !bot.admits(&place, &user) {
                return;
            }
            let ctx = context(&key, &user);
            tracing::debug!(channel = %key, ?control, user, "slack: button");
            match bot.core.chat_command(&ctx, control.command(), &bot.hub).await {
                // A refusal or a remark is for the presser alone.
                ChatOutcome::Reply(text) | ChatOutcome::Private { text, .. } => {
                    bot.ephemeral(&place, &user, &text).await
                }
                other => bot.deliver(&place, &user, other).await,
            }
        });
    }

    /// `/chorus …`: the shared command set in the channel it was typed in (a DM's
    /// top level is its conversation). `stop`, `continue` and `regenerate` act on
    /// the reply where the person last asked in that channel (a mention's thread, an
    /// assistant thread), since Slack sends a slash command without its thread.
    /// Its answers are ephemeral; a run it starts renders where it acts.
    pub fn on_command(self: &Arc<Self>, command: SlackCommandEvent) {
        let typed_in = Place {
            team: command.team_id.to_string(),
            channel: command.channel_id.to_string(),
            thread_ts: None,
        };
        let user = command.user_id.to_string();
        if !self.admits(&typed_in, &user) {
            return;
        }
        let args = command.text.unwrap_or_default();
        let word = args
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let text = format!("{PREFIX} {args}");
        let bot = self.clone();
        self.surface.spawn(async move {
            let place = if REPLY_COMMANDS.contains(&word.as_str()) {
                match bot.threads.last_place_of(&typed_in.key(), &user).await {
                    Some(key) => Place::parse(&key).unwrap_or(typed_in),
                    None => typed_in,
                }
            } else {
                if BINDING_COMMANDS.contains(&word.as_str()) {
                    bot.threads.last_asked_at(&typed_in.key(), &user).await;
                }
                typed_in
            };
            let key = place.key();
            let ctx = context(&key, &user);
            match bot.core.chat_text(&ctx, text.trim(), &bot.hub).await {
                ChatOutcome::Reply(text) | ChatOutcome::Private { text, .. } => {
                    bot.ephemeral(&place, &user, &text).await
                }
                other => bot.deliver(&place, &user, other).await,
            }
        });
    }
}

fn context(key: &str, user: &str) -> ChatContext {
    ChatContext {
        surface: SURFACE.into(),
        channel_key: key.to_string(),
        identity: Identity::new(SURFACE, user),
        display_name: None,
    }
}

/// The question in a message's text: mentions of the app removed, Slack's escapes
/// (`&amp;`, `&lt;`, `&gt;`) undone.
pub fn clean_text(text: &str, bot_user: &str) -> String {
    let mention = format!("<@{bot_user}>");
    text.replace(&mention, "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_escapes_are_removed() {
        assert_eq!(
            clean_text("<@UBOT> is 1 &lt; 2 &amp;&amp; 3 &gt; 2?", "UBOT"),
            "is 1 < 2 && 3 > 2?"
        );
        assert_eq!(clean_text("  <@UBOT>  ", "UBOT"), "");
        assert_eq!(clean_text("hi <@UOTHER>", "UBOT"), "hi <@UOTHER>");
    }

    #[test]
    fn seen_ids_are_answered_once_and_old_ones_forgotten() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        for i in 0..SEEN_CAPACITY {
            seen.first_time(&i.to_string());
        }
        assert!(seen.first_time("a"), "forgotten after capacity");
        assert!(seen.order.len() <= SEEN_CAPACITY);
    }
}
