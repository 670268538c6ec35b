//! The Web API calls the app makes, on slack-morphism's client: messages as
//! `markdown` blocks (Slack renders standard markdown there, code blocks and tables
//! included) with the reply's buttons, ephemeral messages, the assistant-thread
//! methods, and `chat.update` paced for the workspace-wide tier every reply shares.

use chorus_core::chat::{Control, SinkError};
use slack_morphism::api::*;
use slack_morphism::errors::SlackClientError;
use slack_morphism::hyper_tokio::SlackClientHyperHttpsConnector;
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long to wait after a rate limit that names no time.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Characters of the plain `text` fallback (notifications, screen readers) sent with
/// the blocks.
const FALLBACK_CHARS: usize = 300;

/// The client type the app runs on.
pub type Client = slack_morphism::SlackClient<SlackClientHyperHttpsConnector>;

/// Which buttons a reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buttons {
    None,
    /// While it streams.
    Stop,
    /// Once it ended: Regenerate, and Continue when it can go on.
    Ended {
        continuable: bool,
    },
}

/// Spaces `chat.update` calls of the whole workspace: each call takes the next free
/// slot, so all replies together stay within the tier.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The bot's Web API, shared by the handlers and every sink.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<Client>,
    token: SlackApiToken,
    updates: Arc<Pacer>,
}

impl SlackApi {
    pub fn new(client: Arc<Client>, bot_token: &str, update_interval: Duration) -> Self {
        Self {
            client,
            token: SlackApiToken::new(bot_token.to_string().into()),
            updates: Arc::new(Pacer {
                interval: update_interval,
                next: Mutex::new(Instant::now()),
            }),
        }
    }

    fn session(&self) -> SlackClientSession<'_, SlackClientHyperHttpsConnector> {
        self.client.open_session(&self.token)
    }

    /// The bot's own user id and its workspace (`auth.test`).
    pub async fn auth_test(&self) -> Result<(String, String), SlackClientError> {
        let me = self.session().auth_test().await?;
        Ok((me.user_id.to_string(), me.team_id.to_string()))
    }

    /// Posts `markdown` in `channel` (in the thread `thread_ts`, if any); returns its ts.
    pub async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        markdown: &str,
        buttons: Buttons,
    ) -> Result<String, SinkError> {
        let request =
            SlackApiChatPostMessageRequest::new(channel.into(), content(markdown, buttons))
                .opt_thread_ts(thread_ts.map(Into::into));
        let posted = self
            .session()
            .chat_post_message(&request)
            .await
            .map_err(sink_error)?;
        Ok(posted.ts.to_string())
    }

    /// Replaces the text (and buttons) of the message `ts`, in the workspace's pace.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        markdown: &str,
        buttons: Buttons,
    ) -> Result<(), SinkError> {
        self.updates.wait().await;
        let request =
            SlackApiChatUpdateRequest::new(channel.into(), content(markdown, buttons), ts.into());
        self.session()
            .chat_update(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// Starts a natively streamed message in the thread `thread_ts`, for `user` of
    /// `team`, showing the Stop button and then `markdown`; returns its ts.
    pub async fn start_stream(
        &self,
        channel: &str,
        thread_ts: &str,
        recipient: (&str, &str),
        markdown: &str,
    ) -> Result<String, SinkError> {
        let (team, user) = recipient;
        let chunks = vec![
            SlackStreamChunk::Blocks {
                blocks: vec![actions(Buttons::Stop).expect("Stop has a button")],
            },
            SlackStreamChunk::MarkdownText {
                text: markdown.to_string(),
            },
        ];
        let request = SlackApiChatStartStreamRequest::new(channel.into())
            .with_thread_ts(thread_ts.into())
            .with_recipient_user_id(user.into())
            .with_recipient_team_id(team.into())
            .with_chunks(chunks);
        let started = self
            .session()
            .chat_start_stream(&request)
            .await
            .map_err(sink_error)?;
        Ok(started.ts.to_string())
    }

    /// Appends `markdown` to the streamed message `ts`.
    pub async fn append_stream(
        &self,
        channel: &str,
        ts: &str,
        markdown: &str,
    ) -> Result<(), SinkError> {
        let request = SlackApiChatAppendStreamRequest::new(channel.into(), ts.into())
            .with_markdown_text(markdown.to_string());
        self.session()
            .chat_append_stream(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// Ends the stream of the message `ts` (its text stays; `chat.update` may then
    /// replace it).
    pub async fn stop_stream(&self, channel: &str, ts: &str) -> Result<(), SinkError> {
        let request = SlackApiChatStopStreamRequest::new(
            channel.into(),
            ts.into(),
            SlackMessageContent::new(),
        );
        self.session()
            .chat_stop_stream(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// Shows `markdown` to `user` only, in `channel` (and the thread, if any).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        thread_ts: Option<&str>,
        markdown: &str,
    ) -> Result<(), SinkError> {
        let request = SlackApiChatPostEphemeralRequest::new(
            channel.into(),
            user.into(),
            content(markdown, Buttons::None),
        )
        .opt_thread_ts(thread_ts.map(Into::into));
        self.session()
            .chat_post_ephemeral(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// The assistant thread's status line ("is thinking…"); empty clears it.
    pub async fn set_status(
        &self,
        channel: &str,
        thread_ts: &str,
        status: &str,
    ) -> Result<(), SinkError> {
        let request = SlackApiAssistantThreadsSetStatusRequest::new(
            channel.into(),
            status.to_string(),
            thread_ts.into(),
        );
        self.session()
            .assistant_threads_set_status(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// The prompts an assistant thread offers when it opens.
    pub async fn set_suggested_prompts(
        &self,
        channel: &str,
        thread_ts: &str,
        prompts: &[(&str, &str)],
    ) -> Result<(), SinkError> {
        let prompts = prompts
            .iter()
            .map(|(title, message)| {
                SlackAssistantPrompt::new(title.to_string(), message.to_string())
            })
            .collect();
        let request = SlackApiAssistantThreadsSetSuggestedPromptsRequest::new(
            channel.into(),
            thread_ts.into(),
            prompts,
        );
        self.session()
            .assistant_threads_set_suggested_prompts(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    /// The title of an assistant thread (its first question).
    pub async fn set_title(
        &self,
        channel: &str,
        thread_ts: &str,
        title: &str,
    ) -> Result<(), SinkError> {
        let request = SlackApiAssistantThreadSetTitleRequest::new(
            channel.into(),
            thread_ts.into(),
            title.to_string(),
        );
        self.session()
            .assistant_threads_set_title(&request)
            .await
            .map_err(sink_error)?;
        Ok(())
    }
}

/// A message: the markdown in a `markdown` block, the buttons in an `actions` block,
/// and a short plain fallback for notifications.
pub(crate) fn content(markdown: &str, buttons: Buttons) -> SlackMessageContent {
    let mut blocks: Vec<SlackBlock> = vec![SlackMarkdownBlock::new(markdown.to_string()).into()];
    blocks.extend(actions(buttons));
    let fallback: String = markdown.chars().take(FALLBACK_CHARS).collect();
    SlackMessageContent::new()
        .with_text(fallback)
        .with_blocks(blocks)
}

/// The `actions` block of `buttons` (none for [`Buttons::None`]).
fn actions(buttons: Buttons) -> Option<SlackBlock> {
    let controls: &[(Control, &str)] = match buttons {
        Buttons::None => &[],
        Buttons::Stop => &[(Control::Stop, "⏹ Stop")],
        Buttons::Ended { continuable: true } => &[
            (Control::Continue, "▶ Continue"),
            (Control::Regenerate, "🔁 Regenerate"),
        ],
        Buttons::Ended { continuable: false } => &[(Control::Regenerate, "🔁 Regenerate")],
    };
    if controls.is_empty() {
        return None;
    }
    let elements = controls
        .iter()
        .map(|(control, label)| {
            SlackActionBlockElement::Button(
                SlackBlockButtonElement::new((*label).into())
                    .with_action_id(control.button_id().into()),
            )
        })
        .collect();
    Some(SlackActionsBlock::new(elements).into())
}

/// Slack's error code in a failure (`message_not_in_streaming_state`, ...).
pub fn error_code(e: &SinkError) -> Option<&str> {
    match e {
        SinkError::Failed(message) => message.strip_prefix("slack: "),
        SinkError::RateLimited { .. } => None,
    }
}

/// A 429 or a `ratelimited` answer becomes [`SinkError::RateLimited`] with Slack's
/// `Retry-After`; anything else is [`SinkError::Failed`] naming Slack's error code.
pub fn sink_error(e: SlackClientError) -> SinkError {
    match e {
        SlackClientError::RateLimitError(limit) => SinkError::RateLimited {
            retry_after: limit.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        SlackClientError::ApiError(api) if api.code == "ratelimited" => SinkError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
        },
        SlackClientError::ApiError(api) => SinkError::Failed(format!("slack: {}", api.code)),
        other => SinkError::Failed(format!("slack: {other}")),
    }
}
