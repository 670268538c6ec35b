//! Slash commands, buttons, the resume menu and model autocomplete. Every interaction
//! is acknowledged at once (deferred, within Discord's 3 seconds), then answered by
//! editing that acknowledgement; what only its sender may read (a link code, a
//! balance, a refusal) is ephemeral. A reply that streams goes on as channel messages
//! rendered by the kit, so it outlives the 15-minute interaction token.

use crate::addressing::Place;
use crate::allow::Origin;
use crate::bot::Bot;
use crate::commands::{self, Slash};
use crate::rest::Rest;
use chorus_core::chat::split::split_message;
use chorus_core::chat::{ChatContext, ChatOutcome, Command, Control, SinkError};
use reqwest::Method;
use serde_json::Value;
use serenity::all::{
    ApplicationId, ChannelId, CommandInteraction, ComponentInteraction,
    ComponentInteractionDataKind, CreateActionRow, CreateAllowedMentions,
    CreateAutocompleteResponse, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, EditInteractionResponse, GuildId, Http, Interaction, InteractionId,
    Member, PartialChannel, User,
};
use serenity::builder::Builder;
use std::sync::Arc;

/// The custom id of the resume menu.
const RESUME_MENU: &str = "chorus:resume";
/// Discord's limit on the content of one message.
const CONTENT_LIMIT: usize = crate::config::DISCORD_CONTENT_LIMIT;
/// Options a select menu or an autocomplete may show.
const MAX_CHOICES: usize = 25;

/// The parts of an interaction every answer needs. Its answers go through [`Rest`]
/// (serenity's builders serialized), so a 429 on a callback or a webhook edit is
/// waited out from its `retry_after` and tried again, a few times.
struct Ack<'a> {
    rest: &'a Rest,
    /// The application the interaction's webhook belongs to.
    app: ApplicationId,
    id: InteractionId,
    token: &'a str,
    ephemeral: bool,
}

/// How many times one answer is tried when Discord keeps answering 429.
const ANSWER_ATTEMPTS: usize = 5;

impl Ack<'_> {
    /// One call of the interaction's answer, again after each 429 (waiting what it
    /// named), at most [`ANSWER_ATTEMPTS`] times.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Value, SinkError> {
        let body = serde_json::to_value(body)
            .map_err(|e| SinkError::Failed(format!("discord: cannot encode an answer: {e}")))?;
        let mut attempt = 1;
        loop {
            match self.rest.call(method.clone(), path, Some(&body)).await {
                Err(SinkError::RateLimited { retry_after }) if attempt < ANSWER_ATTEMPTS => {
                    tracing::debug!(
                        path,
                        wait_ms = retry_after.as_millis() as u64,
                        "discord: an interaction answer was rate limited; waiting"
                    );
                    tokio::time::sleep(retry_after).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn callback_path(&self) -> String {
        format!("/interactions/{}/{}/callback", self.id, self.token)
    }

    fn webhook_path(&self) -> String {
        format!("/webhooks/{}/{}", self.app, self.token)
    }

    /// Defers the answer (Discord shows "thinking…"); must come within 3 seconds.
    async fn defer(&self) -> bool {
        let response = CreateInteractionResponse::Defer(
            CreateInteractionResponseMessage::new().ephemeral(self.ephemeral),
        );
        match self
            .send(Method::POST, &self.callback_path(), &response)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "discord: cannot acknowledge an interaction");
                false
            }
        }
    }

    /// Answers at once, only to the sender (a refusal before anything is done).
    async fn refuse(&self, text: &str) {
        let response = CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new()
                .content(text)
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new()),
        );
        if let Err(e) = self
            .send(Method::POST, &self.callback_path(), &response)
            .await
        {
            tracing::warn!(error = %e, "discord: cannot answer an interaction");
        }
    }

    /// Edits the deferred answer (`@original`); returns its message id.
    async fn edit_original(&self, edit: &EditInteractionResponse) -> Result<u64, SinkError> {
        let path = format!("{}/messages/@original", self.webhook_path());
        let message = self.send(Method::PATCH, &path, edit).await?;
        message["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| SinkError::Failed("discord: an edited answer without an id".into()))
    }

    /// Replaces the deferred answer with `text` (its first part; the rest as
    /// follow-ups with the same visibility). Returns the answer's message id.
    async fn answer(&self, text: &str) -> Option<u64> {
        let parts = split_message(text, CONTENT_LIMIT);
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let edit = EditInteractionResponse::new()
            .content(first)
            .allowed_mentions(CreateAllowedMentions::new());
        let id = match self.edit_original(&edit).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "discord: cannot answer an interaction");
                return None;
            }
        };
        for part in parts {
            self.follow_up(&part, self.ephemeral).await;
        }
        id
    }

    async fn follow_up(&self, text: &str, ephemeral: bool) {
        let followup = CreateInteractionResponseFollowup::new()
            .content(text)
            .ephemeral(ephemeral)
            .allowed_mentions(CreateAllowedMentions::new());
        if let Err(e) = self
            .send(Method::POST, &self.webhook_path(), &followup)
            .await
        {
            tracing::warn!(error = %e, "discord: cannot send a follow-up");
        }
    }

    /// Private text: in the (ephemeral) answer itself, or as an ephemeral follow-up
    /// when the answer is public. Never in a message others can read.
    async fn private(&self, text: &str) {
        if self.ephemeral {
            self.answer(text).await;
        } else {
            for part in split_message(text, CONTENT_LIMIT) {
                self.follow_up(&part, true).await;
            }
            self.answer("I have answered you privately.").await;
        }
    }
}

/// Where an interaction happened, for the allowlist and for threads.
fn origin_of<'a>(
    guild: Option<GuildId>,
    channel: ChannelId,
    partial: Option<&PartialChannel>,
    user: &User,
    roles: &'a [u64],
) -> Origin<'a> {
    let parent = partial
        .filter(|c| c.thread_metadata.is_some())
        .and_then(|c| c.parent_id);
    Origin {
        guild: guild.map(|g| g.get()),
        channel: Some(parent.unwrap_or(channel).get()),
        user: user.id.get(),
        roles,
    }
}

fn roles_of(member: Option<&Member>) -> Vec<u64> {
    member
        .map(|m| m.roles.iter().map(|r| r.get()).collect())
        .unwrap_or_default()
}

const NOT_ALLOWED: &str = "⚠️ You are not allowed to use this bot here.";

impl Bot {
    pub async fn on_interaction(self: Arc<Self>, interaction: Interaction) {
        let Some(http) = self.http().cloned() else {
            return;
        };
        match interaction {
            Interaction::Command(c) => self.on_command(c).await,
            Interaction::Autocomplete(c) => self.on_autocomplete(&http, c).await,
            Interaction::Component(c) => self.on_component(c).await,
            Interaction::Modal(m) => {
                Ack {
                    rest: self.sinks.rest(),
                    app: m.application_id,
                    id: m.id,
                    token: &m.token,
                    ephemeral: true,
                }
                .refuse("⚠️ I did not ask for that form.")
                .await
            }
            other => {
                tracing::debug!(kind = ?other.kind(), "discord: ignoring an interaction of another kind")
            }
        }
    }

    /// What a place means for an interaction in `channel`: from the interaction's
    /// partial channel when it says, else looked up.
    async fn place_of(
        &self,
        guild: Option<GuildId>,
        channel: ChannelId,
        partial: Option<&PartialChannel>,
    ) -> Place {
        if guild.is_none() {
            self.remember(channel.get(), Place::DM);
            return Place::DM;
        }
        if let Some(p) = partial {
            let thread = p.thread_metadata.is_some()
                || matches!(
                    p.kind,
                    serenity::all::ChannelType::PublicThread
                        | serenity::all::ChannelType::PrivateThread
                );
            if !thread {
                return Place {
                    dm: false,
                    thread: false,
                    ours: false,
                    parent: None,
                };
            }
        }
        self.place(channel, true).await.unwrap_or(Place {
            dm: false,
            thread: false,
            ours: false,
            parent: None,
        })
    }

    async fn on_command(&self, c: CommandInteraction) {
        let roles = roles_of(c.member.as_deref());
        let origin = origin_of(
            c.guild_id,
            c.channel_id,
            c.channel.as_ref(),
            &c.user,
            &roles,
        );
        let slash = commands::parse(&c.data.name, &c.data.options);
        let ephemeral = !matches!(
            slash,
            Ok(Slash::Run {
                ephemeral: false,
                ..
            })
        );
        let ack = Ack {
            rest: self.sinks.rest(),
            app: c.application_id,
            id: c.id,
            token: &c.token,
            ephemeral,
        };
        if !self.allow.admits(&origin) {
            tracing::debug!(user = %c.user.id, "discord: refusing a command from outside the allowlist");
            return ack.refuse(NOT_ALLOWED).await;
        }
        let slash = match slash {
            Ok(s) => s,
            Err(e) => return ack.refuse(&format!("⚠️ {e}")).await,
        };
        if !ack.defer().await {
            return;
        }
        let place = self
            .place_of(c.guild_id, c.channel_id, c.channel.as_ref())
            .await;
        match slash {
            Slash::ResumeMenu => self.resume_menu(&ack, &c.user).await,
            Slash::Help => {
                ack.answer(&commands::help_text(&self.prefix)).await;
            }
            Slash::Run {
                command,
                opens_thread,
                ..
            } => {
                let mut key = c.channel_id.get();
                if let Command::Ask(question) = &command {
                    // The question stays visible where it was asked.
                    let shown = format!("**{}** asked: {question}", display(&c.user));
                    let answer = ack.answer(&shown).await;
                    if opens_thread && !place.dm && !place.thread {
                        let Some(message) = answer else { return };
                        let Some(thread) = self.thread_from(c.channel_id, message, question).await
                        else {
                            return;
                        };
                        key = thread;
                    }
                } else if opens_thread && !place.dm && !place.thread {
                    let Some(thread) = self
                        .standalone_thread(c.channel_id, "New conversation")
                        .await
                    else {
                        ack.answer("⚠️ I cannot open a thread here.").await;
                        return;
                    };
                    key = thread;
                }
                let ctx = self.context(&c.user, key.to_string());
                let is_ask = matches!(command, Command::Ask(_));
                let outcome = self.core.chat_command(&ctx, command, &self.hub).await;
                self.answer_outcome(&ack, &ctx, outcome, is_ask, key != c.channel_id.get())
                    .await;
            }
        }
    }

    /// Carries out core's answer to an interaction whose key is `ctx.channel_key`.
    /// `answered`: the acknowledgement already shows something (the question);
    /// `elsewhere`: the conversation is in a thread opened for it.
    async fn answer_outcome(
        &self,
        ack: &Ack<'_>,
        ctx: &ChatContext,
        outcome: ChatOutcome,
        answered: bool,
        elsewhere: bool,
    ) {
        let key = &ctx.channel_key;
        match outcome {
            ChatOutcome::Private { text, .. } => ack.private(&text).await,
            ChatOutcome::Reply(text) if answered || elsewhere => {
                if elsewhere && !answered {
                    ack.answer(&format!("Answered in <#{key}>.")).await;
                }
                self.hub.reply(key, &text).await;
            }
            ChatOutcome::Reply(text) => {
                ack.answer(&text).await;
            }
            ChatOutcome::Render { run_id, notice } => {
                if !answered {
                    let text = notice.unwrap_or_else(|| {
                        if elsewhere {
                            format!("On it, in <#{key}>.")
                        } else {
                            "On it: the reply is written below.".to_string()
                        }
                    });
                    ack.answer(&text).await;
                    self.hub.render(key, run_id);
                } else {
                    self.hub
                        .deliver(key, ChatOutcome::Render { run_id, notice })
                        .await;
                }
            }
            ChatOutcome::Nothing => {
                if !answered {
                    ack.answer("Done.").await;
                }
            }
        }
    }

    async fn thread_from(&self, channel: ChannelId, message: u64, name: &str) -> Option<u64> {
        let http = self.http()?;
        let message = http.get_message(channel, message.into()).await.ok()?;
        self.open_thread(channel, Some(&message), name).await
    }

    async fn standalone_thread(&self, channel: ChannelId, name: &str) -> Option<u64> {
        self.open_thread(channel, None, name).await
    }

    /// The menu of the sender's recent conversations (from every surface).
    async fn resume_menu(&self, ack: &Ack<'_>, user: &User) {
        let identity = self.context(user, String::new()).identity;
        let account = match self.core.account_for_identity(&identity).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                ack.answer("You have no conversations yet: ask me something.")
                    .await;
                return;
            }
            Err(e) => {
                ack.answer(&format!("⚠️ {e}")).await;
                return;
            }
        };
        let conversations = match self.core.list_conversations(&account).await {
            Ok(c) => c,
            Err(e) => {
                ack.answer(&format!("⚠️ {e}")).await;
                return;
            }
        };
        if conversations.is_empty() {
            ack.answer("You have no conversations yet: ask me something.")
                .await;
            return;
        }
        let options = conversations
            .iter()
            .take(MAX_CHOICES)
            .map(|c| {
                let label: String = c.title.chars().take(100).collect();
                let label = if label.trim().is_empty() {
                    "Untitled".to_string()
                } else {
                    label
                };
                CreateSelectMenuOption::new(label, c.id.to_string())
                    .description(c.model.chars().take(100).collect::<String>())
            })
            .collect();
        let menu = CreateSelectMenu::new(RESUME_MENU, CreateSelectMenuKind::String { options })
            .placeholder("Pick a conversation to bring here");
        let edit = EditInteractionResponse::new()
            .content("Your recent conversations:")
            .components(vec![CreateActionRow::SelectMenu(menu)]);
        if let Err(e) = ack.edit_original(&edit).await {
            tracing::warn!(error = %e, "discord: cannot show the resume menu");
        }
    }

    async fn on_autocomplete(&self, http: &Http, c: CommandInteraction) {
        let typed = c
            .data
            .autocomplete()
            .map(|o| o.value.to_lowercase())
            .unwrap_or_default();
        // The models the sender's role may use (the access policy), as `/model` takes.
        let identity = self.context(&c.user, String::new()).identity;
        let models = match self.core.models_for_identity(&identity).await {
            Ok(models) => models,
            Err(e) => {
                tracing::debug!(error = %e, "discord: no models for an autocomplete");
                Vec::new()
            }
        };
        let response = models
            .iter()
            .filter(|m| m.id.to_lowercase().contains(&typed))
            .take(MAX_CHOICES)
            .fold(CreateAutocompleteResponse::new(), |r, m| {
                r.add_string_choice(m.id.clone(), m.id.clone())
            });
        if let Err(e) = CreateInteractionResponse::Autocomplete(response)
            .execute(http, (c.id, &c.token))
            .await
        {
            tracing::debug!(error = %e, "discord: cannot answer an autocomplete");
        }
    }

    async fn on_component(&self, c: ComponentInteraction) {
        let roles = roles_of(c.member.as_ref());
        let origin = origin_of(
            c.guild_id,
            c.channel_id,
            c.channel.as_ref(),
            &c.user,
            &roles,
        );
        let ack = Ack {
            rest: self.sinks.rest(),
            app: c.application_id,
            id: c.id,
            token: &c.token,
            ephemeral: true,
        };
        if !self.allow.admits(&origin) {
            return ack.refuse(NOT_ALLOWED).await;
        }
        if c.data.custom_id == RESUME_MENU {
            let ComponentInteractionDataKind::StringSelect { values } = &c.data.kind else {
                return ack.refuse("⚠️ That menu sent no choice.").await;
            };
            let Some(choice) = values.first().cloned() else {
                return ack.refuse("⚠️ That menu sent no choice.").await;
            };
            if !ack.defer().await {
                return;
            }
            let place = self
                .place_of(c.guild_id, c.channel_id, c.channel.as_ref())
                .await;
            let mut key = c.channel_id.get();
            if !place.dm && !place.thread {
                let Some(thread) = self
                    .standalone_thread(c.channel_id, "Resumed conversation")
                    .await
                else {
                    ack.answer("⚠️ I cannot open a thread here.").await;
                    return;
                };
                key = thread;
            }
            let ctx = self.context(&c.user, key.to_string());
            let outcome = self
                .core
                .chat_command(&ctx, Command::Resume(Some(choice)), &self.hub)
                .await;
            let elsewhere = key != c.channel_id.get();
            return self
                .answer_outcome(&ack, &ctx, outcome, false, elsewhere)
                .await;
        }
        let Some(control) = Control::from_button_id(&c.data.custom_id) else {
            return ack.refuse("⚠️ I do not know that button.").await;
        };
        if !ack.defer().await {
            return;
        }
        let Some(key) = self
            .hub
            .channel_of_message(&c.message.id.get().to_string())
            .await
            .filter(|k| *k == c.channel_id.get().to_string())
        else {
            ack.answer("⚠️ That reply is no longer one I can steer.")
                .await;
            return;
        };
        let ctx = self.context(&c.user, key);
        let outcome = self
            .core
            .chat_command(&ctx, control.command(), &self.hub)
            .await;
        let outcome = match (control, outcome) {
            (Control::Stop, ChatOutcome::Nothing) => ChatOutcome::Reply("⏹️ Stopping.".into()),
            (_, other) => other,
        };
        match outcome {
            // A refusal (another person's reply) or a notice: only to the presser.
            ChatOutcome::Reply(text) => {
                ack.answer(&text).await;
            }
            other => self.answer_outcome(&ack, &ctx, other, false, false).await,
        }
    }
}

fn display(user: &User) -> String {
    user.global_name
        .clone()
        .unwrap_or_else(|| user.name.clone())
}
