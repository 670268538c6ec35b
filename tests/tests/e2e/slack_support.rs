//! What the Slack end-to-end tests share: a fake Slack, a `chorus serve` with a
//! `[slack]` section pointing at it on the scripted model, and people who write to
//! the app and press its buttons.

use anyhow::{Result, ensure};
use chorus_tests::fake_slack::{self, FakeSlack, Message, fixtures};
use chorus_tests::{ServerConfig, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a reply may take to show up or converge (the fake answers in ms; the
/// scripted model streams for a few seconds at most).
pub const WAIT: Duration = Duration::from_secs(45);

/// A channel the app is in, people, and their DMs with the app.
pub const CHANNEL: &str = "C0GENERAL1";
pub const ALICE: &str = "U0ALICE01";
pub const BOB: &str = "U0BOB0001";
pub const ALICE_DM: &str = "D0ALICE01";

/// The buttons of a reply that streams, and of one that ended.
pub const STREAMING: &[&str] = &["chorus:stop"];
pub const ENDED: &[&str] = &["chorus:regenerate"];
pub const CONTINUABLE: &[&str] = &["chorus:continue", "chorus:regenerate"];

/// The `[slack]` settings tests vary.
#[derive(Clone, Debug)]
pub struct SlackOptions {
    /// The Events API instead of Socket Mode.
    pub events_api: bool,
    /// Slack's native streaming in threads (the default) or `chat.update`.
    pub native_streaming: bool,
    pub min_edit_interval_ms: u64,
    pub update_interval_ms: u64,
    pub max_edits_per_message: u32,
    /// More lines of the `[slack]` section (the allowlists).
    pub extra: String,
}

impl Default for SlackOptions {
    fn default() -> Self {
        Self {
            events_api: false,
            native_streaming: true,
            min_edit_interval_ms: 200,
            update_interval_ms: 100,
            max_edits_per_message: 40,
            extra: String::new(),
        }
    }
}

/// One Slack test's world.
pub struct SlackWorld {
    pub slack: FakeSlack,
    pub server: TestServer,
    next_ts: AtomicU64,
}

impl SlackWorld {
    /// A server answering with `script` at `tokens_per_second`, connected to a fresh
    /// fake Slack.
    pub async fn start(
        script: &str,
        tokens_per_second: f64,
        options: SlackOptions,
    ) -> Result<Self> {
        Self::start_with(
            ServerConfig::new().scripted("s", script, tokens_per_second),
            options,
        )
        .await
    }

    /// A server on `config` plus the `[slack]` section, connected to a fresh fake Slack.
    pub async fn start_with(config: ServerConfig, options: SlackOptions) -> Result<Self> {
        Self::start_via(config, options, |slack| slack.api_url()).await
    }

    /// As [`SlackWorld::start_with`], with the Web API at the URL `api_url` gives for
    /// the fake (a forwarder that is closed at first, for a Slack down at start).
    pub async fn start_via(
        config: ServerConfig,
        options: SlackOptions,
        api_url: impl FnOnce(&FakeSlack) -> String,
    ) -> Result<Self> {
        let slack = FakeSlack::start().await?;
        let config = config.raw_toml(&slack_toml(&api_url(&slack), &options));
        let server = TestServer::start(config).await?;
        Ok(Self {
            slack,
            server,
            next_ts: AtomicU64::new(1),
        })
    }

    /// A fresh ts for a person's message (the fake's own are `1700000000.*`).
    pub fn user_ts(&self) -> String {
        format!(
            "1800000000.{:06}",
            self.next_ts.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `user` mentions the app at the top level of `channel` over Socket Mode; returns
    /// the message's ts (the root of the reply's thread) once the envelope is acked.
    pub async fn mention(&self, user: &str, text: &str) -> Result<String> {
        let ts = self.user_ts();
        let event = fixtures::app_mention(
            &format!("Ev{ts}"),
            CHANNEL,
            user,
            &ts,
            None,
            &format!("<@{}> {text}", fake_slack::BOT_USER),
        );
        let envelope = self.slack.deliver("events_api", event).await?;
        self.slack.wait_ack(&envelope, WAIT).await?;
        Ok(ts)
    }

    /// `user` presses `button` on the app's message `ts` in `channel`.
    pub async fn press(&self, user: &str, channel: &str, ts: &str, button: &str) -> Result<()> {
        let envelope = self
            .slack
            .deliver(
                "interactive",
                fixtures::block_actions(user, channel, ts, button),
            )
            .await?;
        self.slack.wait_ack(&envelope, WAIT).await
    }

    /// `/chorus TEXT` by `user` in `channel`.
    pub async fn command(&self, user: &str, channel: &str, text: &str) -> Result<()> {
        let envelope = self
            .slack
            .deliver(
                "slash_commands",
                fixtures::slash_command(user, channel, text),
            )
            .await?;
        self.slack.wait_ack(&envelope, WAIT).await
    }

    /// Waits until the app's messages in `channel` under `thread` read `expected`
    /// together, the last one with `buttons`; returns them.
    pub async fn converged(
        &self,
        channel: &str,
        thread: Option<&str>,
        expected: &str,
        buttons: &[&str],
    ) -> Result<Vec<Message>> {
        self.slack
            .wait_until(
                &format!(
                    "the {}-byte reply in {channel} thread {thread:?} with buttons {buttons:?}",
                    expected.len()
                ),
                WAIT,
                |s| {
                    let messages = s.thread(channel, thread);
                    let text: String = messages.iter().map(|m| m.text.as_str()).collect();
                    let last_buttons = messages.last().map(|m| m.buttons.clone());
                    (text == expected && last_buttons.is_some_and(|b| b == buttons))
                        .then_some(messages)
                },
            )
            .await
    }
}

/// The `[slack]` section pointing at the Web API at `api_url`.
pub fn slack_toml(api_url: &str, options: &SlackOptions) -> String {
    let mode = if options.events_api {
        format!(
            "mode = \"events\"\nsigning_secret = \"{}\"\n",
            fake_slack::SIGNING_SECRET
        )
    } else {
        format!("app_token = \"{}\"\n", fake_slack::APP_TOKEN)
    };
    format!(
        "[slack]\nbot_token = \"{}\"\n{mode}api_url = \"{}\"\nnative_streaming = {}\n\
         min_edit_interval_ms = {}\nupdate_interval_ms = {}\nmax_edits_per_message = {}\n\
         connect_timeout_secs = 20\n{}\n",
        fake_slack::BOT_TOKEN,
        api_url,
        options.native_streaming,
        options.min_edit_interval_ms,
        options.update_interval_ms,
        options.max_edits_per_message,
        options.extra,
    )
}

/// Fails unless `text` is a proper prefix of `script` followed by the renderer's note
/// saying `note` ("Stopped", "Interrupted").
pub fn stopped_with_note(text: &str, script: &str, note: &str) -> Result<()> {
    let Some((body, ending)) = text.rsplit_once("\n\n_") else {
        anyhow::bail!("no ending note in {text:?}");
    };
    ensure!(
        ending.contains(note),
        "the note {ending:?} does not say {note}"
    );
    ensure!(
        !body.is_empty() && body.len() < script.len() && script.starts_with(body),
        "the text before the note is not a proper prefix of the script: {body:?}"
    );
    Ok(())
}
