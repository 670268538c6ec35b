//! A driver per surface for the cross-surface table (`cross_surface.rs`). One world
//! runs every surface that exists — the web, Matrix (the shared Synapse), Discord and
//! Slack (their fakes) — on instance A, and the web alone on instance B, both on one
//! PostgreSQL and one Redis; a person is a web account on B with an identity on each
//! chat surface a row uses, linked with a code the web issues (the surface's answer is
//! private: ephemeral on Discord and Slack, the DM on Matrix). The few things a person
//! does with a reply — ask, stop, bring the conversation here (`resume`), continue —
//! and what the reply's message shows are the same calls on every surface, so the
//! table is data.
//!
//! The model is the fake script model (OpenAI's wire), which streams the world's
//! script and continues it from any partial text; a question can ask it to fail half
//! way through (`[fail]`, the error event OpenAI sends mid-stream) or to hold there
//! until the test releases it (`[hold]`: a reply certainly still streaming).

use crate::matrix_support::{self, BotAccount, BotOptions};
use crate::slack_support::{self, SlackOptions};
use crate::{only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::fake_discord_bot::{self as discord, FakeDiscordBot};
use chorus_tests::fake_script_model::FakeScriptModel;
use chorus_tests::fake_slack::{FakeSlack, fixtures};
use chorus_tests::matrix_client::MatrixUser;
use chorus_tests::synapse::Synapse;
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, ServerConfig, TestDatabase, TestRedis, TestServer, logged_in_client, unique_name,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::SemaphorePermit;

/// How long a step may take (every surface's bot shares one process and two cores
/// with the other tests).
pub const WAIT: Duration = Duration::from_secs(90);

/// The surfaces that exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Web,
    Matrix,
    Discord,
    Slack,
}

impl Surface {
    pub const ALL: [Surface; 4] = [
        Surface::Web,
        Surface::Matrix,
        Surface::Discord,
        Surface::Slack,
    ];
}

const DISCORD_CONTINUABLE: [&str; 2] = ["chorus:continue", "chorus:regenerate"];
const DISCORD_STREAMING: [&str; 1] = ["chorus:stop"];

/// The model's key (the fake checks it).
const MODEL_KEY: &str = "sk-table";

/// How a resumed reply is expected to show.
#[derive(Clone, Copy, Debug)]
pub enum Shows {
    /// Ended with this note ("Stopped", "Interrupted", "Failed") and the Continue
    /// control; the resume list names the state in lower case.
    Ended(&'static str),
    /// Still streaming: part of the script, no note, the Stop control.
    Live,
}

/// The world of the table: the fakes, the Matrix bot account, instance A (every
/// surface and the web) and instance B (the web only).
pub struct World {
    pub text: String,
    pub a: TestServer,
    pub b: TestServer,
    pub model: FakeScriptModel,
    synapse: &'static Synapse,
    matrix_bot: BotAccount,
    pub discord: FakeDiscordBot,
    pub slack: FakeSlack,
    next: AtomicU64,
    _slot: SemaphorePermit<'static>,
    _redis: TestRedis,
    _db: TestDatabase,
}

/// A person: a web account (on B) and, linked to it, an identity on each chat surface
/// they were made for, with their direct chat with its bot.
pub struct Someone {
    pub web: ApiClient,
    matrix: Option<(MatrixUser, OwnedRoomId)>,
    discord: Option<(discord::Person, u64)>,
    /// The Slack user and their DM with the app.
    slack: Option<(String, String)>,
}

/// A reply as one surface shows it: the message (or the web conversation) to read.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The conversation, and the run to stop or continue.
    Web {
        conversation: String,
        run: String,
    },
    /// The thread's root and the bot's message in it.
    Matrix {
        root: OwnedEventId,
        message: OwnedEventId,
    },
    Discord {
        message: u64,
    },
    Slack {
        ts: String,
    },
}

impl World {
    /// Starts everything, the model answering `text` at `tokens_per_second`; returns
    /// once every surface of A is connected.
    pub async fn start(text: &str, tokens_per_second: f64) -> Result<Self> {
        let slot = matrix_support::slot().await?;
        let db = TestDatabase::create().await?;
        let redis = TestRedis::new().await?;
        let pace = Duration::from_secs_f64(1.0 / tokens_per_second);
        let model =
            FakeScriptModel::spawn(([127, 0, 0, 1], 0).into(), text, MODEL_KEY, pace, pace).await?;
        let shared = ServerConfig::new()
            .postgres(db.url())
            .redis_journal(redis.url(), redis.prefix())
            .lease_ttl_secs(3)
            .checkpoint_interval_ms(200)
            .openai("f", &model.base_url(), MODEL_KEY, &["script"])
            // A held reply waits for the test, longer than the tests' usual idle limit.
            .provider_setting("f", "idle_timeout_secs", 600);
        let synapse = Synapse::shared().await?;
        let matrix_bot = BotAccount::register(synapse).await?;
        // Many rows' replies at once through one bot: Synapse's low default limit
        // would only slow the table down (back-off has its own test).
        synapse.lift_rate_limit(matrix_bot.user_id()).await?;
        let discord = FakeDiscordBot::start().await?;
        let slack = FakeSlack::start().await?;
        let a = TestServer::start(
            shared
                .clone()
                .instance_id("every-surface-a")
                .raw_toml(&matrix_bot.toml(&synapse.url(), &BotOptions::default()))
                .raw_toml(&discord.config_toml("min_edit_interval_ms = 400"))
                .raw_toml(&slack_support::slack_toml(
                    &slack.api_url(),
                    &SlackOptions::default(),
                )),
        )
        .await?;
        let b = TestServer::start(shared.instance_id("web-only-b")).await?;
        let world = Self {
            text: text.to_string(),
            a,
            b,
            model,
            synapse,
            matrix_bot,
            discord,
            slack,
            next: AtomicU64::new(1),
            _slot: slot,
            _redis: redis,
            _db: db,
        };
        world.connected(0, 0).await?;
        Ok(world)
    }

    /// Starts A again after a kill; returns once its surfaces are connected again.
    pub async fn restart_a(&mut self) -> Result<()> {
        let identifies = self.discord.lock().identifies.len();
        let connections = self.slack.state().connections;
        self.a.restart().await?;
        self.connected(identifies, connections).await
    }

    /// Waits until A's `/readyz` says every surface is connected, the fake Discord has
    /// more than `identifies` IDENTIFYs and the fake Slack more than `connections`
    /// Socket Mode connections, one of them open.
    async fn connected(&self, identifies: usize, connections: u32) -> Result<()> {
        let client = self.a.client();
        until("instance A's surfaces to be connected", WAIT, || async {
            let body: Value = client.get("/readyz").await?.json().await?;
            Ok((body["status"] == "ready").then_some(()))
        })
        .await?;
        self.discord
            .wait("the Discord bot to identify", WAIT, |st| {
                (st.identifies.len() > identifies).then_some(())
            })
            .await?;
        self.discord.wait_ready(WAIT).await?;
        self.slack
            .wait_until("the Slack app to connect", WAIT, |st| {
                (st.connections > connections && st.connected()).then_some(())
            })
            .await
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn matrix_bot(&self) -> &str {
        self.matrix_bot.user_id()
    }

    /// A new person with a web account on B and an identity on each chat surface of
    /// `on`, linked to that account.
    pub async fn someone(&self, on: &[Surface]) -> Result<Someone> {
        let web = logged_in_client(&self.b, &unique_name("table")).await?;
        let mut who = Someone {
            web,
            matrix: None,
            discord: None,
            slack: None,
        };
        for surface in on {
            match surface {
                Surface::Web => {}
                Surface::Matrix => {
                    let bot = self.matrix_bot();
                    let user = MatrixUser::new_human(self.synapse, "table").await?;
                    let room = user.create_dm(bot).await?;
                    user.wait_joined(&room, bot, WAIT).await?;
                    let code = link_code(&who.web).await?;
                    let sent = user
                        .send_text(&room, &format!("!chorus link {code}"))
                        .await?;
                    let answer = user.first_reply(&room, bot, &sent, WAIT).await?;
                    ensure!(
                        !answer.text.starts_with('⚠') && !answer.text.contains("nvalid"),
                        "`!chorus link CODE` answered {:?}",
                        answer.text
                    );
                    who.matrix = Some((user, room));
                }
                Surface::Discord => {
                    let n = self.next();
                    let person =
                        discord::Person::new(100_000_000_000_100_000 + n, &format!("table{n}"));
                    let dm = self.discord.dm_channel(&person);
                    let code = link_code(&who.web).await?;
                    let token = self
                        .discord
                        .slash(dm, &person, "link", &[("code", &code)])?;
                    let (answer, shown) = self.discord.answer_of(&token, WAIT).await?;
                    ensure!(
                        answer.ephemeral && !shown.content.starts_with('⚠'),
                        "`/link CODE` answered {:?} (ephemeral: {})",
                        shown.content,
                        answer.ephemeral
                    );
                    who.discord = Some((person, dm));
                }
                Surface::Slack => {
                    let n = self.next();
                    let (user, dm) = (format!("U0TB{n:05}"), format!("D0TB{n:05}"));
                    let code = link_code(&who.web).await?;
                    self.slack_command(&user, &dm, &format!("link {code}"))
                        .await?;
                    let answer = self
                        .slack
                        .wait_until("the private answer to `/chorus link CODE`", WAIT, |st| {
                            st.ephemerals.iter().find(|e| e.user == user).cloned()
                        })
                        .await?;
                    ensure!(
                        !answer.text.starts_with('⚠') && answer.channel == dm,
                        "`/chorus link CODE` answered {answer:?}"
                    );
                    who.slack = Some((user, dm));
                }
            }
        }
        Ok(who)
    }

    /// Asks `question` on `surface`; returns the reply once it shows `min` chars.
    pub async fn ask(
        &self,
        who: &Someone,
        surface: Surface,
        question: &str,
        min: usize,
    ) -> Result<Reply> {
        match surface {
            Surface::Web => {
                let conversation = who.web.create_conversation(None).await?;
                let run = who.web.send_message(&conversation, question).await?.run_id;
                until("the web reply to show text", WAIT, || async {
                    let view = who.web.run(&run).await?;
                    Ok((s(&view, "text").chars().count() >= min).then_some(()))
                })
                .await?;
                Ok(Reply::Web { conversation, run })
            }
            Surface::Matrix => {
                let (user, room) = who.matrix()?;
                let bot = self.matrix_bot();
                let root = user.send_text(room, question).await?;
                let first = user.first_reply(room, bot, &root, WAIT).await?;
                matrix_support::wait_partial(user, room, bot, &first.event_id, min).await?;
                Ok(Reply::Matrix {
                    root,
                    message: first.event_id,
                })
            }
            Surface::Discord => {
                let (person, dm) = who.discord()?;
                self.discord.say(dm, person, question, false)?;
                let first = self
                    .discord
                    .wait("the Discord reply to show text", WAIT, |st| {
                        st.bot_messages(dm)
                            .into_iter()
                            .next()
                            .filter(|m| m.content.chars().count() >= min)
                    })
                    .await?;
                Ok(Reply::Discord { message: first.id })
            }
            Surface::Slack => {
                let (user, dm) = who.slack()?;
                let ts = format!("1800000000.{:06}", self.next());
                let event =
                    fixtures::message_im(&format!("EvTB{ts}"), dm, user, &ts, None, question);
                let envelope = self.slack.deliver("events_api", event).await?;
                self.slack.wait_ack(&envelope, WAIT).await?;
                let first = self
                    .slack
                    .wait_until("the Slack reply to show text", WAIT, |st| {
                        st.thread(dm, None)
                            .into_iter()
                            .next()
                            .filter(|m| m.text.chars().count() >= min)
                    })
                    .await?;
                Ok(Reply::Slack { ts: first.ts })
            }
        }
    }

    /// Stops `reply` the surface's way (the web's stop, `!chorus stop` in the Matrix
    /// thread, the Stop button on Discord and Slack); returns the text it stopped at
    /// once the surface shows it stopped.
    pub async fn stop(&self, who: &Someone, reply: &Reply) -> Result<String> {
        match reply {
            Reply::Web { run, .. } => {
                who.web.stop(run).await?;
            }
            Reply::Matrix { root, .. } => {
                let (user, room) = who.matrix()?;
                user.send_in_thread(room, root, "!chorus stop", None)
                    .await?;
            }
            Reply::Discord { message } => {
                let (person, _) = who.discord()?;
                self.discord.press(*message, person, "chorus:stop")?;
            }
            Reply::Slack { ts } => {
                let (user, dm) = who.slack()?;
                self.slack_press(user, dm, ts, "chorus:stop").await?;
            }
        }
        self.ended_as(who, reply, "Stopped").await
    }

    /// Waits until `reply` shows that the provider erred mid-stream (core ends the
    /// run `interrupted`, its text kept), with the Continue control; returns the text
    /// it shows before the note.
    pub async fn failed(&self, who: &Someone, reply: &Reply) -> Result<String> {
        self.ended_as(who, reply, "Interrupted").await
    }

    /// Waits until `reply` has ended as `note` says ("Stopped", "Failed") and shows it
    /// (with the Continue control where there are buttons); returns the text before
    /// the note, a proper prefix of the script.
    async fn ended_as(&self, who: &Someone, reply: &Reply, note: &str) -> Result<String> {
        let status = note.to_lowercase();
        match reply {
            Reply::Web { run, .. } => {
                let ended = who.web.wait_run_ended(run, WAIT).await?;
                ensure!(s(&ended, "status") == status, "the web run: {ended}");
                let partial = s(&ended, "text").to_string();
                crate::assert_proper_prefix(&partial, &self.text)?;
                Ok(partial)
            }
            Reply::Matrix { root, message } => {
                let (user, room) = who.matrix()?;
                let bot = self.matrix_bot();
                let ended = user
                    .wait_until(&format!("the Matrix reply {status}"), room, WAIT, |me| {
                        me.replies(room, bot, Some(root))
                            .into_iter()
                            .find(|r| &r.event_id == message && r.text.contains(note))
                    })
                    .await?;
                matrix_support::check_partial_with_note(&ended.text, &self.text, note)
            }
            Reply::Discord { message } => {
                let ended = self
                    .discord
                    .wait(&format!("the Discord reply {status}"), WAIT, |st| {
                        st.messages
                            .get(message)
                            .filter(|m| m.buttons() == DISCORD_CONTINUABLE)
                            .cloned()
                    })
                    .await?;
                matrix_support::check_partial_with_note(&ended.content, &self.text, note)
            }
            Reply::Slack { ts } => {
                let (_, dm) = who.slack()?;
                let ended = self
                    .slack
                    .wait_until(&format!("the Slack reply {status}"), WAIT, |st| {
                        st.thread(dm, None)
                            .into_iter()
                            .find(|m| &m.ts == ts && m.buttons == slack_support::CONTINUABLE)
                    })
                    .await?;
                matrix_support::check_partial_with_note(&ended.text, &self.text, note)
            }
        }
    }

    /// Drops the Discord gateway connection and the Slack socket of A at once and
    /// waits until both are back (the Discord session resumed or identified anew, a
    /// new Socket Mode connection open).
    pub async fn drop_connections(&self) -> Result<()> {
        let (resumed, identified) = {
            let st = self.discord.lock();
            (
                st.resumes.iter().filter(|(_, ok)| *ok).count(),
                st.identifies.len(),
            )
        };
        let connections = self.slack.state().connections;
        self.discord.gateway_drop()?;
        self.slack.drop_socket()?;
        self.discord
            .wait("the Discord bot back on the gateway", WAIT, |st| {
                st.reconnected(resumed, identified).then_some(())
            })
            .await?;
        self.discord.wait_ready(WAIT).await?;
        self.slack
            .wait_until("the Slack app connected again", WAIT, |st| {
                (st.connections > connections && st.connected()).then_some(())
            })
            .await
    }

    /// Brings the person's newest conversation to `surface` (the web: finds it;
    /// elsewhere: `resume` lists it in the state `shows` says, `resume 1` or the menu
    /// binds it here) and waits until its reply shows there as `shows` says: ended with
    /// its note and the Continue control, or live (part of the script, the Stop
    /// control); returns it and the text it shows (before the note).
    pub async fn resume(
        &self,
        who: &Someone,
        surface: Surface,
        shows: Shows,
    ) -> Result<(Reply, String)> {
        let (state, web_status) = match shows {
            Shows::Ended(note) => (note.to_lowercase(), note.to_lowercase()),
            Shows::Live => ("being written".to_string(), "streaming".to_string()),
        };
        // What a message of the resumed reply shows (before its note), if it is one;
        // `controls`: it carries the controls `shows` expects.
        let shown = |text: &str, controls: bool| -> Option<String> {
            if !controls {
                return None;
            }
            match shows {
                Shows::Live => (!text.is_empty()
                    && text.len() < self.text.len()
                    && self.text.starts_with(text))
                .then(|| text.to_string()),
                Shows::Ended(note) => {
                    matrix_support::check_partial_with_note(text, &self.text, note).ok()
                }
            }
        };
        let discord_controls: &[&str] = match shows {
            Shows::Live => &DISCORD_STREAMING,
            Shows::Ended(_) => &DISCORD_CONTINUABLE,
        };
        let slack_controls = match shows {
            Shows::Live => slack_support::STREAMING,
            Shows::Ended(_) => slack_support::CONTINUABLE,
        };
        match surface {
            Surface::Web => {
                let conversation = until("the conversation on the web", WAIT, || async {
                    let list: Value = who.web.get("/api/conversations").await?.json().await?;
                    Ok(list["conversations"]
                        .as_array()
                        .and_then(|c| c.first())
                        .map(|c| s(c, "id").to_string()))
                })
                .await?;
                let run = until("the reply's run on the web", WAIT, || async {
                    let messages = who.web.messages(&conversation).await?;
                    Ok(messages
                        .iter()
                        .find(|m| m["role"] == "assistant")
                        .map(|m| s(m, "run_id").to_string()))
                })
                .await?;
                let view = until(&format!("the run to be {web_status}"), WAIT, || async {
                    let view = who.web.run(&run).await?;
                    Ok(
                        (s(&view, "status") == web_status && !s(&view, "text").is_empty())
                            .then_some(view),
                    )
                })
                .await?;
                let partial = s(&view, "text").to_string();
                crate::assert_proper_prefix(&partial, &self.text)?;
                Ok((Reply::Web { conversation, run }, partial))
            }
            Surface::Matrix => {
                let (user, room) = who.matrix()?;
                let bot = self.matrix_bot();
                let listing = user.send_text(room, "!chorus resume").await?;
                let list = user.first_reply(room, bot, &listing, WAIT).await?;
                ensure!(
                    list.text.contains("1. ") && list.text.contains(&state),
                    "`!chorus resume` does not list the {state} conversation: {:?}",
                    list.text
                );
                let root = user.send_text(room, "!chorus resume 1").await?;
                let (message, partial) = user
                    .wait_until("the resumed reply in Matrix", room, WAIT, |me| {
                        me.replies(room, bot, Some(&root))
                            .into_iter()
                            .find_map(|r| shown(&r.text, true).map(|p| (r.event_id, p)))
                    })
                    .await?;
                Ok((Reply::Matrix { root, message }, partial))
            }
            Surface::Discord => {
                let (person, dm) = who.discord()?;
                let token = self.discord.slash(dm, person, "resume", &[])?;
                let (answer, menu) = self.discord.answer_of(&token, WAIT).await?;
                ensure!(answer.ephemeral, "the `/resume` menu is public");
                let choice = menu.components[0]["components"][0]["options"][0]["value"]
                    .as_str()
                    .with_context(|| format!("no choice in the menu {:?}", menu.components))?
                    .to_string();
                let token = self
                    .discord
                    .select(menu.id, person, "chorus:resume", &choice)?;
                self.discord.answer_of(&token, WAIT).await?;
                let (message, partial) = self
                    .discord
                    .wait("the resumed reply on Discord", WAIT, |st| {
                        st.bot_messages(dm).into_iter().find_map(|m| {
                            shown(&m.content, m.buttons() == discord_controls).map(|p| (m.id, p))
                        })
                    })
                    .await?;
                Ok((Reply::Discord { message }, partial))
            }
            Surface::Slack => {
                let (user, dm) = who.slack()?;
                self.slack_command(user, dm, "resume").await?;
                let list = self
                    .slack
                    .wait_until("the private `/chorus resume` list", WAIT, |st| {
                        st.ephemerals
                            .iter()
                            .find(|e| e.user == user && e.text.contains("1. "))
                            .cloned()
                    })
                    .await?;
                ensure!(
                    list.text.contains(&state),
                    "`/chorus resume` does not list the {state} conversation: {:?}",
                    list.text
                );
                self.slack_command(user, dm, "resume 1").await?;
                let (ts, partial) = self
                    .slack
                    .wait_until("the resumed reply on Slack", WAIT, |st| {
                        st.thread(dm, None).into_iter().find_map(|m| {
                            shown(&m.text, m.buttons == slack_controls).map(|p| (m.ts, p))
                        })
                    })
                    .await?;
                Ok((Reply::Slack { ts }, partial))
            }
        }
    }

    /// Continues `reply` the surface's way (the web's continue, `!chorus continue` in
    /// the thread, the Continue button); returns the reply to read after.
    pub async fn continue_reply(&self, who: &Someone, reply: Reply) -> Result<Reply> {
        match &reply {
            Reply::Web { conversation, run } => {
                let next = who.web.continue_run(run).await?;
                return Ok(Reply::Web {
                    conversation: conversation.clone(),
                    run: next,
                });
            }
            Reply::Matrix { root, .. } => {
                let (user, room) = who.matrix()?;
                user.send_in_thread(room, root, "!chorus continue", None)
                    .await?;
            }
            Reply::Discord { message } => {
                let (person, _) = who.discord()?;
                let token = self.discord.press(*message, person, "chorus:continue")?;
                self.discord.answer_of(&token, WAIT).await?;
            }
            Reply::Slack { ts } => {
                let (user, dm) = who.slack()?;
                self.slack_press(user, dm, ts, "chorus:continue").await?;
            }
        }
        Ok(reply)
    }

    /// Waits until `reply`'s message (the web: the conversation's one answer, its run
    /// complete) reads exactly the script.
    pub async fn finished(&self, who: &Someone, reply: &Reply) -> Result<()> {
        let text = &self.text;
        match reply {
            Reply::Web { conversation, .. } => {
                until("the web answer to be the whole script", WAIT, || async {
                    let messages = who.web.messages(conversation).await?;
                    let assistant = only_assistant(&messages)?;
                    Ok((messages.len() == 2
                        && s(assistant, "content") == text
                        && s(assistant, "run_status") == "complete")
                        .then_some(()))
                })
                .await
            }
            Reply::Matrix { root, message } => {
                let (user, room) = who.matrix()?;
                let done =
                    matrix_support::wait_text(user, room, self.matrix_bot(), root, text).await?;
                ensure!(
                    &done.event_id == message,
                    "Matrix finished {} rather than the reply's message {message}",
                    done.event_id
                );
                Ok(())
            }
            Reply::Discord { message } => {
                self.discord
                    .wait("the Discord message to read the script", WAIT, |st| {
                        st.messages
                            .get(message)
                            .filter(|m| &m.content == text)
                            .map(|_| ())
                    })
                    .await
            }
            Reply::Slack { ts } => {
                let (_, dm) = who.slack()?;
                self.slack
                    .wait_until("the Slack message to read the script", WAIT, |st| {
                        st.thread(dm, None).into_iter().find(|m| {
                            &m.ts == ts && &m.text == text && m.buttons == slack_support::ENDED
                        })
                    })
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Fails unless `reply` is the only message of the bot where it was asked (a
    /// restarted bot finished its message in place instead of posting another).
    pub async fn alone(&self, who: &Someone, reply: &Reply) -> Result<()> {
        match reply {
            Reply::Web { conversation, .. } => {
                let messages = who.web.messages(conversation).await?;
                ensure!(messages.len() == 2, "the conversation holds {messages:?}");
            }
            Reply::Matrix { root, message } => {
                let (user, room) = who.matrix()?;
                matrix_support::finished_in_place(
                    user,
                    room,
                    self.matrix_bot(),
                    root,
                    message,
                    &self.text,
                )
                .await?;
            }
            Reply::Discord { message } => {
                let (_, dm) = who.discord()?;
                let posted = self.discord.lock().bot_messages(dm);
                ensure!(
                    posted.len() == 1 && posted[0].id == *message,
                    "the bot's messages in the DM: {posted:?}"
                );
            }
            Reply::Slack { ts } => {
                let (_, dm) = who.slack()?;
                let posted = self.slack.state().thread(dm, None);
                ensure!(
                    posted.len() == 1 && &posted[0].ts == ts,
                    "the app's messages in the DM: {posted:?}"
                );
            }
        }
        Ok(())
    }

    async fn slack_command(&self, user: &str, channel: &str, text: &str) -> Result<()> {
        let envelope = self
            .slack
            .deliver(
                "slash_commands",
                fixtures::slash_command(user, channel, text),
            )
            .await?;
        self.slack.wait_ack(&envelope, WAIT).await
    }

    async fn slack_press(&self, user: &str, channel: &str, ts: &str, button: &str) -> Result<()> {
        let envelope = self
            .slack
            .deliver(
                "interactive",
                fixtures::block_actions(user, channel, ts, button),
            )
            .await?;
        self.slack.wait_ack(&envelope, WAIT).await
    }
}

impl Someone {
    fn matrix(&self) -> Result<(&MatrixUser, &OwnedRoomId)> {
        let (user, room) = self.matrix.as_ref().context("no Matrix identity")?;
        Ok((user, room))
    }

    fn discord(&self) -> Result<(&discord::Person, u64)> {
        let (person, dm) = self.discord.as_ref().context("no Discord identity")?;
        Ok((person, *dm))
    }

    fn slack(&self) -> Result<(&str, &str)> {
        let (user, dm) = self.slack.as_ref().context("no Slack identity")?;
        Ok((user, dm))
    }
}

/// A link code the web account issues.
async fn link_code(web: &ApiClient) -> Result<String> {
    let issued: Value = web
        .request(Method::POST, "/api/link-codes")
        .send()
        .await?
        .error_for_status()
        .context("POST /api/link-codes")?
        .json()
        .await?;
    Ok(issued["code"].as_str().context("no link code")?.to_string())
}
