//! What the Discord end-to-end tests share: the fake Discord, a `chorus serve` with
//! `[discord]` pointed at it on the scripted model, the people who use it, and waits
//! on what a Discord client would show.

use anyhow::{Result, ensure};
use chorus_tests::fake_discord_bot::{FakeDiscordBot, Msg, Person, State};
use chorus_tests::{ServerConfig, TestServer};
use std::time::Duration;

/// How long a reply may take to show up or to converge (the fakes answer in ms; the
/// bound is for a loaded machine).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn alice() -> Person {
    Person::new(100_000_000_000_000_001, "alice")
}

pub fn bob() -> Person {
    Person::new(100_000_000_000_000_002, "bob")
}

/// One Discord test's world: the fake and a connected bot.
pub struct DiscordWorld {
    pub fake: FakeDiscordBot,
    pub server: TestServer,
}

impl DiscordWorld {
    /// A bot answering with `script` at `tokens_per_second`; `extra` is more
    /// `[discord]` keys.
    pub async fn start(script: &str, tokens_per_second: f64, extra: &str) -> Result<Self> {
        Self::start_with(
            ServerConfig::new().scripted("s", script, tokens_per_second),
            extra,
        )
        .await
    }

    pub async fn start_with(config: ServerConfig, extra: &str) -> Result<Self> {
        let fake = FakeDiscordBot::start().await?;
        let extra = format!("min_edit_interval_ms = 400\n{extra}");
        let server = TestServer::start(config.raw_toml(&fake.config_toml(&extra))).await?;
        fake.wait_ready(WAIT).await?;
        Ok(Self { fake, server })
    }

    /// Waits until the bot's `n`-th (0-based) public message in `channel` reads
    /// exactly `expected`.
    pub async fn wait_text(&self, channel: u64, n: usize, expected: &str) -> Result<Msg> {
        self.fake
            .wait(
                &format!(
                    "the bot's message #{n} in {channel} to read the {}-char text",
                    expected.chars().count()
                ),
                WAIT,
                |s: &State| {
                    s.bot_messages(channel)
                        .into_iter()
                        .nth(n)
                        .filter(|m| m.content == expected)
                },
            )
            .await
    }

    /// Waits until the bot's `n`-th message in `channel` holds at least `min` chars.
    pub async fn wait_partial(&self, channel: u64, n: usize, min: usize) -> Result<Msg> {
        self.fake
            .wait(
                &format!("the bot's message #{n} in {channel} to show {min} chars"),
                WAIT,
                |s| {
                    s.bot_messages(channel)
                        .into_iter()
                        .nth(n)
                        .filter(|m| m.content.chars().count() >= min)
                },
            )
            .await
    }
}

/// Fails unless `text` is a non-empty proper prefix of `script` followed by the
/// renderer's note naming `note` (e.g. "Stopped").
pub fn check_partial_with_note(text: &str, script: &str, note: &str) -> Result<()> {
    let Some((body, ending)) = text.rsplit_once("\n\n_") else {
        anyhow::bail!("no ending note in {text:?}");
    };
    ensure!(
        ending.contains(note),
        "the ending note {ending:?} does not say {note:?}"
    );
    ensure!(
        !body.is_empty() && body.len() < script.len() && script.starts_with(body),
        "the text before the note is not a proper prefix of the script: {body:?}"
    );
    Ok(())
}
