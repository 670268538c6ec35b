//! The commands of chat surfaces, carried out: a surface hands over a message (or a
//! button, slash command or reaction) with its [`ChatContext`]; this resolves the
//! sender's account and the binding's conversation and answers with what to do next.
//! Errors become replies that name the problem: a chat surface has no status codes.

use crate::chat::{ChatContext, ChatOutcome, Command, CommandForms, parse_command};
use crate::core::{Conflict, Core, CoreError, Forbidden, InvalidInput, Place};
use crate::sso::ExternalIdentity;
use crate::telemetry::metrics::surface_label;
use chorus_model::ids::ConversationId;
use chorus_model::time::now_ms;
use chorus_store::{Account, Conversation, Run};

/// Conversations `resume` lists.
const RESUME_LIST_LEN: i64 = 10;

impl Core {
    /// Carries out a text message addressed to the bot: a command when it starts with
    /// the prefix of `forms`, a question otherwise. Never fails: errors come back as a
    /// reply. `forms` (the surface's [`RenderHub`](crate::chat::RenderHub), or a bare
    /// prefix) says how the answers name other commands.
    pub async fn chat_text<'a>(
        &self,
        ctx: &ChatContext,
        text: &str,
        forms: impl Into<CommandForms<'a>>,
    ) -> ChatOutcome {
        let forms = forms.into();
        match parse_command(text, forms.prefix()) {
            Ok(command) => self.chat_command(ctx, command, forms).await,
            Err(e) => ChatOutcome::Reply(e.to_string()),
        }
    }

    /// Carries out a command (from text, a button or a reaction). Its span is the
    /// root of the trace of a reply it starts.
    #[tracing::instrument(
        name = "chorus.chat.command",
        skip_all,
        fields(surface = %ctx.surface, chorus.command = command_name(&command))
    )]
    pub async fn chat_command<'a>(
        &self,
        ctx: &ChatContext,
        command: Command,
        forms: impl Into<CommandForms<'a>>,
    ) -> ChatOutcome {
        let name = command_name(&command);
        match self.run_command(ctx, command, forms.into()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if matches!(e, CoreError::Store(_) | CoreError::Journal(_)) {
                    tracing::error!(surface = %ctx.surface, command = name, error = %e, "chat command failed");
                    ChatOutcome::Reply("Something went wrong on our side; please try again.".into())
                } else {
                    ChatOutcome::Reply(format!("⚠️ {}", error_text(&e)))
                }
            }
        }
    }

    async fn run_command(
        &self,
        ctx: &ChatContext,
        command: Command,
        forms: CommandForms<'_>,
    ) -> Result<ChatOutcome, CoreError> {
        if let Command::Help(topic) = &command {
            return Ok(ChatOutcome::Reply(forms.help(topic.as_deref())));
        }
        if let Command::Link(Some(code)) = &command {
            // Redeeming needs no account of its own: the identity joins the issuer's.
            return Ok(ChatOutcome::Reply(
                self.link_command(&ctx.identity, Some(code)).await?,
            ));
        }
        let account = self.chat_account(ctx).await?;
        match command {
            Command::Help(_) => unreachable!("answered above"),
            // A code is a key to the account and a balance is nobody else's business:
            // both go to their owner only.
            Command::Link(_) => Ok(ChatOutcome::Private {
                to: ctx.identity.clone(),
                text: self.link_command(&ctx.identity, None).await?,
                notice: "I have sent you a link code privately, in a direct chat.".into(),
            }),
            Command::Usage => Ok(ChatOutcome::Private {
                to: ctx.identity.clone(),
                text: self.usage_command(&ctx.identity).await?,
                notice: "I have sent you your usage privately, in a direct chat.".into(),
            }),
            Command::Ask(question) => self.chat_ask(ctx, &account, &question, forms).await,
            Command::Stop => {
                let run = self.bound_run(ctx, &account).await?;
                match run {
                    Some(run) if run.status.is_active() => {
                        self.stop_run(&account, &run.id).await?;
                        Ok(ChatOutcome::Nothing)
                    }
                    _ => Ok(ChatOutcome::Reply(
                        "Nothing is being written here right now.".into(),
                    )),
                }
            }
            Command::Continue => match self.bound_run(ctx, &account).await? {
                Some(run) => Ok(ChatOutcome::Render {
                    run_id: self
                        .continue_run_on(&account, &run.id, surface_label(&ctx.surface))
                        .await?,
                    notice: None,
                }),
                None => Ok(ChatOutcome::Reply(format!(
                    "There is no reply to continue here. {} lists your conversations.",
                    forms.hint("resume", "")
                ))),
            },
            Command::Regenerate => self.chat_regenerate(ctx, &account, forms).await,
            Command::Resume(None) => self.resume_list(&account, forms).await,
            Command::Resume(Some(which)) => self.resume_bind(ctx, &account, &which, forms).await,
            Command::New(title) => {
                // Refused before anything is made in another person's thread.
                self.bound_conversation(ctx, &account).await?;
                let conversation = self
                    .create_conversation(&account, title.as_deref(), None, None)
                    .await?;
                self.bind_here(ctx, &conversation.id).await?;
                Ok(ChatOutcome::Reply(format!(
                    "Started a new conversation, “{}”, with {}. Ask away.",
                    conversation.title, conversation.model
                )))
            }
            Command::Model(None) => {
                let current = match self.bound_conversation(ctx, &account).await? {
                    Some(c) => c.model,
                    None => self.default_model_for(&account).await?,
                };
                let mut text = String::from("Models:\n");
                for model in self.models_for(&account).await? {
                    let mark = if model.id == current {
                        " ← in use here"
                    } else {
                        ""
                    };
                    text.push_str(&format!("- `{}`{mark}\n", model.id));
                }
                text.push_str(&format!("\n{} switches.", forms.hint("model", "NAME")));
                Ok(ChatOutcome::Reply(text))
            }
            Command::Model(Some(model)) => {
                self.check_model_for(&account, &model).await?;
                match self.bound_conversation(ctx, &account).await? {
                    Some(c) => {
                        self.store
                            .set_conversation_model(&account.id, &c.id, &model)
                            .await?;
                    }
                    None => {
                        let c = self
                            .create_conversation(&account, None, Some(&model), None)
                            .await?;
                        self.bind_here(ctx, &c.id).await?;
                    }
                }
                Ok(ChatOutcome::Reply(format!(
                    "Using `{model}` here from now on."
                )))
            }
        }
    }

    /// The sender's account; first contact from an unknown identity creates one.
    async fn chat_account(&self, ctx: &ChatContext) -> Result<Account, CoreError> {
        if let Some(account) = self.account_for_identity(&ctx.identity).await? {
            return Ok(account);
        }
        let external = ExternalIdentity {
            platform: ctx.identity.platform.clone(),
            external_id: ctx.identity.external_id.clone(),
            label: ctx
                .display_name
                .clone()
                .unwrap_or_else(|| ctx.identity.external_id.clone()),
            name_hints: vec![account_name_hint(&ctx.identity.external_id)],
            admin: None,
        };
        let (account, _) = self.account_for(&external, None).await?;
        tracing::info!(surface = %ctx.surface, account = %account.id, "new account on first contact");
        Ok(account)
    }

    /// The conversation the binding speaks in, if it has one the sender owns. A
    /// binding to someone else's conversation (another person's thread) is refused.
    async fn bound_conversation(
        &self,
        ctx: &ChatContext,
        account: &Account,
    ) -> Result<Option<Conversation>, CoreError> {
        let Some(id) = self.store.binding(&ctx.surface, &ctx.channel_key).await? else {
            return Ok(None);
        };
        match self.store.conversation(&account.id, &id).await? {
            Some(c) => Ok(Some(c)),
            None => Err(Forbidden::OthersConversation.into()),
        }
    }

    /// Binds the context's channel to one of the sender's conversations. The store
    /// refuses (in the same statement) when the channel is bound to another account's
    /// conversation, so a rebind racing the check cannot take another's thread.
    async fn bind_here(
        &self,
        ctx: &ChatContext,
        conversation: &ConversationId,
    ) -> Result<(), CoreError> {
        if self
            .store
            .bind(&ctx.surface, &ctx.channel_key, conversation)
            .await?
        {
            Ok(())
        } else {
            Err(Forbidden::OthersConversation.into())
        }
    }

    /// The newest run of the binding's conversation.
    async fn bound_run(
        &self,
        ctx: &ChatContext,
        account: &Account,
    ) -> Result<Option<Run>, CoreError> {
        match self.bound_conversation(ctx, account).await? {
            Some(c) => Ok(self.store.latest_run_of_conversation(&c.id).await?),
            None => Ok(None),
        }
    }

    async fn chat_ask(
        &self,
        ctx: &ChatContext,
        account: &Account,
        question: &str,
        forms: CommandForms<'_>,
    ) -> Result<ChatOutcome, CoreError> {
        let conversation = match self.bound_conversation(ctx, account).await? {
            Some(c) => c,
            None => {
                let title = title_from(question);
                let c = self
                    .create_conversation(account, Some(&title), None, None)
                    .await?;
                self.bind_here(ctx, &c.id).await?;
                c
            }
        };
        self.refuse_while_running(&conversation.id, forms).await?;
        let sent = self
            .send_message_at(
                account,
                &conversation.id,
                question,
                Place::Newest,
                None,
                surface_label(&ctx.surface),
            )
            .await?;
        Ok(ChatOutcome::Render {
            run_id: sent.run_id,
            notice: None,
        })
    }

    async fn chat_regenerate(
        &self,
        ctx: &ChatContext,
        account: &Account,
        forms: CommandForms<'_>,
    ) -> Result<ChatOutcome, CoreError> {
        let Some(conversation) = self.bound_conversation(ctx, account).await? else {
            return Ok(ChatOutcome::Reply(
                "There is no answer to regenerate here.".into(),
            ));
        };
        self.refuse_while_running(&conversation.id, forms).await?;
        let messages = self.store.messages(&conversation.id).await?;
        // The newest question; its answer again, as a new branch beside the old one.
        let Some(question) = messages.iter().rev().find(|m| m.role == "user") else {
            return Ok(ChatOutcome::Reply(
                "There is no question to answer again here.".into(),
            ));
        };
        let place = match &question.parent_id {
            Some(parent) => Place::Under(parent),
            None => Place::Root,
        };
        let sent = self
            .send_message_at(
                account,
                &conversation.id,
                &question.content,
                place,
                None,
                surface_label(&ctx.surface),
            )
            .await?;
        Ok(ChatOutcome::Render {
            run_id: sent.run_id,
            notice: None,
        })
    }

    async fn refuse_while_running(
        &self,
        conversation: &ConversationId,
        forms: CommandForms<'_>,
    ) -> Result<(), CoreError> {
        match self.store.latest_run_of_conversation(conversation).await? {
            Some(run) if run.status.is_active() => Err(Conflict::ReplyInProgress {
                stop: forms.hint("stop", ""),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The account's most recent conversations (from every surface), numbered for
    /// `resume N`, with how their last reply stands.
    async fn resume_list(
        &self,
        account: &Account,
        forms: CommandForms<'_>,
    ) -> Result<ChatOutcome, CoreError> {
        let conversations = self
            .store
            .list_conversations(&account.id, RESUME_LIST_LEN)
            .await?;
        if conversations.is_empty() {
            return Ok(ChatOutcome::Reply(
                "You have no conversations yet: ask me something.".into(),
            ));
        }
        let mut text = String::from("Your recent conversations:\n");
        for (i, c) in conversations.iter().enumerate() {
            let run = self.store.latest_run_of_conversation(&c.id).await?;
            let state = match &run {
                Some(r) if r.status.is_active() => "**reply being written**".to_string(),
                Some(r) if r.is_continuable() => {
                    format!("**reply {}**", r.status.as_str())
                }
                Some(r) => format!("reply {}", r.status.as_str()),
                None => "no reply yet".into(),
            };
            let surfaces = self
                .store
                .surfaces_of(&c.id)
                .await?
                .into_iter()
                .filter(|s| s != "web")
                .collect::<Vec<_>>();
            let places = if surfaces.is_empty() {
                "web".to_string()
            } else {
                format!("web, {}", surfaces.join(", "))
            };
            text.push_str(&format!(
                "{}. {} — {state} · {places} · {}\n",
                i + 1,
                c.title,
                age(c.updated_at)
            ));
        }
        text.push_str(&format!(
            "\n{} brings one here; then {} goes on with a stopped or interrupted reply.",
            forms.hint("resume", "N"),
            forms.hint("continue", "")
        ));
        Ok(ChatOutcome::Reply(text))
    }

    async fn resume_bind(
        &self,
        ctx: &ChatContext,
        account: &Account,
        which: &str,
        forms: CommandForms<'_>,
    ) -> Result<ChatOutcome, CoreError> {
        let conversations = self
            .store
            .list_conversations(&account.id, RESUME_LIST_LEN)
            .await?;
        let chosen = match which.parse::<usize>() {
            Ok(n) if n >= 1 && n <= conversations.len() => conversations.into_iter().nth(n - 1),
            Ok(_) => {
                return Err(InvalidInput::ResumeNumber {
                    number: which.to_string(),
                    list: forms.hint("resume", ""),
                }
                .into());
            }
            Err(_) => {
                let id = ConversationId::from_stored(which.to_string());
                self.store.conversation(&account.id, &id).await?
            }
        };
        let conversation = chosen.ok_or(CoreError::NotFound("conversation"))?;
        // Another person's thread stays theirs.
        self.bound_conversation(ctx, account).await?;
        self.bind_here(ctx, &conversation.id).await?;
        let notice = format!("Resuming “{}” here.", conversation.title);
        match self
            .store
            .latest_run_of_conversation(&conversation.id)
            .await?
        {
            Some(run) => Ok(ChatOutcome::Render {
                run_id: run.id,
                notice: Some(notice),
            }),
            None => Ok(ChatOutcome::Reply(notice)),
        }
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Ask(_) => "ask",
        Command::Stop => "stop",
        Command::Continue => "continue",
        Command::Regenerate => "regenerate",
        Command::Resume(_) => "resume",
        Command::New(_) => "new",
        Command::Model(_) => "model",
        Command::Link(_) => "link",
        Command::Usage => "usage",
        Command::Help(_) => "help",
    }
}

/// The words of an error for a chat reply (the web turns the same errors into
/// status codes).
fn error_text(e: &CoreError) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => "Failed.".into(),
    }
}

/// A new conversation's title: the start of its first question.
fn title_from(question: &str) -> String {
    let line = question.lines().next().unwrap_or("").trim();
    let mut title: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    if title.is_empty() {
        "New chat".into()
    } else {
        title
    }
}

/// An account name from a platform user id: `@alice:example.org` → `alice`.
fn account_name_hint(external_id: &str) -> String {
    let local = external_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or("");
    let name: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(48)
        .collect();
    if name.is_empty() { "user".into() } else { name }
}

/// "5 min ago" and the like.
fn age(at_ms: i64) -> String {
    let secs = (now_ms() - at_ms).max(0) / 1000;
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_titles() {
        assert_eq!(account_name_hint("@alice:example.org"), "alice");
        assert_eq!(account_name_hint("@ä:x"), "user");
        assert_eq!(account_name_hint("U123ABC"), "U123ABC");
        assert_eq!(title_from("What is Rust?\nMore"), "What is Rust?");
        assert_eq!(title_from(&"x".repeat(100)).chars().count(), 61);
        assert_eq!(title_from("   "), "New chat");
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            error_text(&CoreError::NotFound("conversation")),
            "Conversation not found."
        );
    }
}
