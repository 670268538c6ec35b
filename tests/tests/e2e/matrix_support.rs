//! What the Matrix end-to-end tests share: a bot account on the test Synapse, the
//! `[matrix]` section that points a `chorus serve` at it, the scripted model, and
//! waits on what a human sees of the bot's replies.

use anyhow::{Context, Result, ensure};
use chorus_tests::matrix_client::{MatrixUser, Reply};
use chorus_tests::synapse::{MatrixAccount, Synapse, short_id};
use chorus_tests::{ServerConfig, TestServer};
use matrix_sdk::ruma::{EventId, OwnedEventId, RoomId};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a reply may take to show up or to converge (Synapse, the bot and the
/// tests share two cores; the bot backs off on 429s).
pub const WAIT: Duration = Duration::from_secs(90);

/// The bot's display name; humans address it with it.
pub const BOT_NAME: &str = "Chorus";

/// At most this many Matrix tests run their servers at once: each one runs a chorus
/// process and several syncing clients against the one Synapse.
static SLOTS: Semaphore = Semaphore::const_new(3);

/// One of [`SLOTS`], for a test that runs a Matrix bot without a [`MatrixWorld`].
pub async fn slot() -> Result<SemaphorePermit<'static>> {
    SLOTS.acquire().await.context("the Matrix test slots")
}

/// The bot's `[matrix]` settings that tests vary.
#[derive(Clone, Debug)]
pub struct BotOptions {
    /// `allowed_users`; empty: `allow_all` (every user of the homeserver, its own server).
    pub allowed_users: Vec<String>,
    pub min_edit_interval_ms: u64,
    pub max_edits_per_message: u32,
    pub max_message_bytes: usize,
}

impl Default for BotOptions {
    fn default() -> Self {
        Self {
            allowed_users: Vec::new(),
            min_edit_interval_ms: 1000,
            max_edits_per_message: 30,
            max_message_bytes: 8000,
        }
    }
}

/// A bot user registered on Synapse (under its low message rate limit: no override).
pub struct BotAccount {
    pub account: MatrixAccount,
}

impl BotAccount {
    pub async fn register(synapse: &Synapse) -> Result<Self> {
        let account = synapse
            .register(&format!("chorus-bot-{}", short_id()), false)
            .await?;
        synapse.set_display_name(&account, BOT_NAME).await?;
        Ok(Self { account })
    }

    pub fn user_id(&self) -> &str {
        &self.account.user_id
    }

    /// The `[matrix]` section logging this bot in with its password through
    /// `homeserver_url` (the shared Synapse, or a forwarder in front of it).
    pub fn toml(&self, homeserver_url: &str, options: &BotOptions) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let users: Vec<String> = options.allowed_users.iter().map(|u| quote(u)).collect();
        format!(
            "[matrix]\nhomeserver_url = {}\nuser_id = {}\npassword = {}\n\
             allowed_users = [{}]\nallow_all = {}\nmin_edit_interval_ms = {}\n\
             max_edits_per_message = {}\nmax_message_bytes = {}\n",
            quote(homeserver_url),
            quote(&self.account.user_id),
            quote(&self.account.password),
            users.join(", "),
            users.is_empty(),
            options.min_edit_interval_ms,
            options.max_edits_per_message,
            options.max_message_bytes,
        )
    }
}

/// One Matrix test's world: the shared Synapse, a bot account, a `chorus serve` with
/// `[matrix]` on the scripted model, and a slot of [`SLOTS`].
pub struct MatrixWorld {
    pub synapse: &'static Synapse,
    pub bot: BotAccount,
    pub server: TestServer,
    _slot: SemaphorePermit<'static>,
}

impl MatrixWorld {
    /// Starts a bot answering with `script` at `tokens_per_second` (SQLite, the
    /// in-process journal).
    pub async fn start(script: &str, tokens_per_second: f64, options: BotOptions) -> Result<Self> {
        Self::start_with(
            ServerConfig::new().scripted("s", script, tokens_per_second),
            options,
        )
        .await
    }

    /// Starts a bot on `config` plus the `[matrix]` section.
    pub async fn start_with(config: ServerConfig, options: BotOptions) -> Result<Self> {
        Self::start_via(config, options, None).await
    }

    /// Starts a bot on `config` plus the `[matrix]` section, reaching the homeserver
    /// through `homeserver_url` when given (a forwarder), else directly.
    pub async fn start_via(
        config: ServerConfig,
        options: BotOptions,
        homeserver_url: Option<&str>,
    ) -> Result<Self> {
        let slot = SLOTS.acquire().await.context("the Matrix test slots")?;
        let synapse = Synapse::shared().await?;
        let bot = BotAccount::register(synapse).await?;
        let url = homeserver_url.map_or_else(|| synapse.url(), str::to_string);
        let server = TestServer::start(config.raw_toml(&bot.toml(&url, &options))).await?;
        Ok(Self {
            synapse,
            bot,
            server,
            _slot: slot,
        })
    }

    pub fn bot_id(&self) -> &str {
        self.bot.user_id()
    }

    /// Restarts the server and waits until `/readyz` says its surfaces are connected:
    /// the bot skips what came before its first sync, so a message sent earlier could
    /// go unanswered.
    pub async fn restart(&mut self) -> Result<()> {
        self.server.restart().await?;
        let client = self.server.client();
        chorus_tests::wait::until("the restarted bot to be connected", WAIT, || async {
            let body: serde_json::Value = client.get("/readyz").await?.json().await?;
            Ok((body["status"] == "ready").then_some(()))
        })
        .await
    }

    /// A human user (rate limit lifted) logged in with matrix-sdk.
    pub async fn human(&self, name: &str) -> Result<MatrixUser> {
        MatrixUser::new_human(self.synapse, name).await
    }

    /// A DM from `human` to the bot, once the bot has joined it.
    pub async fn dm(&self, human: &MatrixUser) -> Result<matrix_sdk::ruma::OwnedRoomId> {
        let room = human.create_dm(self.bot_id()).await?;
        human.wait_joined(&room, self.bot_id(), WAIT).await?;
        Ok(room)
    }
}

/// Waits until the first message of `sender` in the thread of `root` reads exactly
/// `expected`; returns it.
pub async fn wait_text(
    human: &MatrixUser,
    room: &RoomId,
    sender: &str,
    root: &EventId,
    expected: &str,
) -> Result<Reply> {
    human
        .wait_until(
            &format!(
                "the reply in the thread of {root} to read the {}-byte script",
                expected.len()
            ),
            room,
            WAIT,
            |me| {
                me.replies(room, sender, Some(root))
                    .into_iter()
                    .find(|r| r.text == expected)
            },
        )
        .await
}

/// Waits until the bot's message `first` in the thread of `root` reads exactly
/// `expected`, then asks for help in the thread and checks that, when the help came,
/// the thread held that one reply and the help (the bot finished its message in place
/// instead of posting another).
pub async fn finished_in_place(
    human: &MatrixUser,
    room: &RoomId,
    sender: &str,
    root: &EventId,
    first: &EventId,
    expected: &str,
) -> Result<()> {
    let done = wait_text(human, room, sender, root, expected).await?;
    ensure!(
        done.event_id == first,
        "the bot finished {} instead of its message {first}",
        done.event_id
    );
    let replies = thread_until_help(human, room, sender, root).await?;
    ensure!(
        replies.len() == 2 && replies[0].event_id == first && replies[0].text == expected,
        "the thread holds {replies:?} instead of the one finished reply and the help"
    );
    Ok(())
}

/// Whether `text` is the bot's help (the command list).
pub fn is_help(text: &str) -> bool {
    text.contains("Commands (`!chorus COMMAND`)")
}

/// Sends `!chorus help` in the thread of `root` and waits for the bot's answer there:
/// a reply the bot posts only after it has handled what came before, so the thread
/// then shows whether anything else came first. Returns the bot's messages in the
/// thread, in order, as they stood when the help came.
pub async fn thread_until_help(
    human: &MatrixUser,
    room: &RoomId,
    bot: &str,
    root: &EventId,
) -> Result<Vec<Reply>> {
    human
        .send_in_thread(room, root, "!chorus help", None)
        .await?;
    human
        .wait_until("the bot's help in the thread", room, WAIT, |me| {
            let replies = me.replies(room, bot, Some(root));
            replies.iter().any(|r| is_help(&r.text)).then_some(replies)
        })
        .await
}

/// Waits until the bot's message `id` shows some text, and returns it.
pub async fn wait_partial(
    human: &MatrixUser,
    room: &RoomId,
    sender: &str,
    id: &OwnedEventId,
    min_len: usize,
) -> Result<Reply> {
    human
        .wait_until(
            &format!("the bot's message {id} to show at least {min_len} bytes"),
            room,
            WAIT,
            |me| {
                me.replies(room, sender, None)
                    .into_iter()
                    .find(|r| &r.event_id == id && r.text.len() >= min_len)
            },
        )
        .await
}

/// Fails unless `text` is a non-empty proper prefix of `script` followed by the
/// renderer's note `note` (e.g. "Stopped"): what a stopped or interrupted reply shows.
pub fn check_partial_with_note(text: &str, script: &str, note: &str) -> Result<String> {
    let (body, ending) = text
        .rsplit_once("\n\n_")
        .with_context(|| format!("no ending note in {text:?}"))?;
    ensure!(
        ending.contains(note),
        "the ending note {ending:?} does not say {note:?}"
    );
    ensure!(
        !body.is_empty() && body.len() < script.len() && script.starts_with(body),
        "the text before the note is not a proper prefix of the script: {body:?}"
    );
    Ok(body.to_string())
}

/// Fails unless the bot's messages in `room` are exactly `expected`, in order.
///
/// Called once the bot has answered a message sent after some it must ignore, it shows
/// that those got no answer: the bot handles a room's messages in order, so an answer
/// to an earlier one would have come before (and a command's at once).
pub fn ensure_bot_posted_only(
    human: &MatrixUser,
    room: &RoomId,
    bot: &str,
    expected: &[&EventId],
) -> Result<()> {
    let posted = human.replies(room, bot, None);
    let ids: Vec<&EventId> = posted.iter().map(|r| r.event_id.as_ref()).collect();
    ensure!(
        ids == expected,
        "the bot posted {posted:?} in {room} where only {expected:?} was due"
    );
    Ok(())
}
