//! A local Discord for the bot: REST under `/api/v10` and a gateway WebSocket on
//! loopback, the documented subset the Chorus bot uses, with payloads built from the
//! documented examples in `tests/fixtures/discord/` (checked against serenity's own
//! model types by `fixtures_deserialize_into_serenity`).
//!
//! - [`rest`]: `GET /gateway`, the current user, command registration, messages
//!   (create, edit, get), typing, channels, threads (which also dispatch
//!   `THREAD_CREATE`), DM channels, interaction callbacks (204) and the webhook
//!   `@original` edits and follow-ups, each call logged with its time; 429s on demand.
//! - [`gateway`]: HELLO, IDENTIFY → READY, heartbeats and their ACKs, and the
//!   dispatches tests send (`MESSAGE_CREATE`, `INTERACTION_CREATE`), numbered with
//!   increasing sequence numbers.
//!
//! Tests act as people (a message, a slash command, a button press) and read what a
//! Discord client would show: messages with their edits and components, and the
//! answers to interactions with whether they were ephemeral.

mod gateway;
mod rest;

use crate::fake_server::FakeServer;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The bot's user id (and its application's id, as for bots made in the portal).
pub const BOT_ID: u64 = 900_000_000_000_000_001;
/// The one guild, and its text channel.
pub const GUILD_ID: u64 = 900_000_000_000_000_010;
pub const CHANNEL_ID: u64 = 900_000_000_000_000_020;
/// The token the bot must present.
pub const TOKEN: &str = "fake.bot.token";

/// A fixture from `tests/fixtures/discord/`.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/discord/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A person on the fake Discord.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub roles: Vec<u64>,
}

impl Person {
    pub fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.into(),
            roles: Vec::new(),
        }
    }

    fn user(&self) -> Value {
        let mut user = fixture("message_create")["author"].clone();
        user["id"] = json!(self.id.to_string());
        user["username"] = json!(self.name);
        user["global_name"] = json!(self.name);
        user
    }

    fn member(&self) -> Value {
        let mut member = fixture("interaction_command")["member"].clone();
        member["user"] = self.user();
        member["roles"] = json!(self.roles.iter().map(u64::to_string).collect::<Vec<_>>());
        member
    }
}

/// A message as Discord keeps it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: u64,
    pub channel: u64,
    pub author: u64,
    pub content: String,
    pub components: Value,
    /// When each edit came.
    pub edits: Vec<Instant>,
    /// Only the interaction's user sees it.
    pub ephemeral: bool,
    /// The interaction (token) it answers, if any.
    pub interaction: Option<String>,
}

impl Msg {
    /// The custom ids of its buttons.
    pub fn buttons(&self) -> Vec<String> {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["custom_id"].as_str().map(str::to_string))
            .collect()
    }
}

/// A channel.
#[derive(Clone, Debug)]
pub struct Chan {
    pub id: u64,
    /// 0 text, 1 DM, 11 public thread.
    pub kind: u8,
    pub guild: Option<u64>,
    pub parent: Option<u64>,
    pub owner: Option<u64>,
    pub name: String,
    pub recipient: Option<u64>,
}

/// One REST call, as logged.
#[derive(Clone, Debug)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

/// An interaction sent to the bot and how it was answered.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The callback type (4 message, 5 deferred, 6 deferred update, 8 autocomplete).
    pub callback: Option<u64>,
    pub callback_data: Value,
    pub ephemeral: bool,
    /// The original response message, once shown.
    pub original: Option<u64>,
    pub followups: Vec<u64>,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    pub messages: BTreeMap<u64, Msg>,
    pub channels: BTreeMap<u64, Chan>,
    /// By interaction token.
    pub answers: BTreeMap<String, Answer>,
    /// The channel of each interaction, by token.
    pub answer_channels: BTreeMap<String, u64>,
    pub commands: Vec<Value>,
    pub typing: Vec<(u64, Instant)>,
    /// Message creates and edits to refuse with 429 (the next N), and the wait named.
    pub limit_next: VecDeque<f64>,
    /// Interaction callbacks and webhook writes to refuse with 429 (the next N).
    pub limit_answers_next: VecDeque<f64>,
    pub identifies: Vec<Value>,
    /// RESUMEs (op 6) the bot sent, and whether each was accepted.
    pub resumes: Vec<(Value, bool)>,
    next_id: u64,
    seq: u64,
    /// The live gateway session's outbox.
    session: Option<mpsc::UnboundedSender<Value>>,
    /// The session id READY gave; a RESUME must name it.
    session_id: Option<String>,
    /// Every dispatch of the session, for a RESUME to replay what the bot missed.
    dispatched: Vec<Value>,
}

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1_300_000_000_000_000_000 + self.next_id
    }

    /// The bot's messages in `channel` that everyone sees, oldest first.
    pub fn bot_messages(&self, channel: u64) -> Vec<Msg> {
        self.messages
            .values()
            .filter(|m| m.channel == channel && m.author == BOT_ID && !m.ephemeral)
            .cloned()
            .collect()
    }

    /// Every message in `channel` that everyone sees.
    pub fn public_messages(&self, channel: u64) -> Vec<Msg> {
        self.messages
            .values()
            .filter(|m| m.channel == channel && !m.ephemeral)
            .cloned()
            .collect()
    }

    /// Threads the bot opened under `parent`.
    pub fn threads(&self, parent: u64) -> Vec<Chan> {
        self.channels
            .values()
            .filter(|c| c.kind == 11 && c.parent == Some(parent))
            .cloned()
            .collect()
    }

    fn dispatch(&mut self, event: &str, data: Value) -> Result<()> {
        let session = self
            .session
            .as_ref()
            .context("no gateway session: the bot is not connected")?;
        self.seq += 1;
        let frame = json!({"op": 0, "t": event, "s": self.seq, "d": data});
        self.dispatched.push(frame.clone());
        // A session dropped a moment ago: the bot gets the event when it resumes.
        let _ = session.send(frame);
        Ok(())
    }

    /// Whether the gateway has a session the bot is connected on (a RESUME or an
    /// IDENTIFY counted so far: `resumed`, `identified`).
    pub fn reconnected(&self, resumed: usize, identified: usize) -> bool {
        self.resumes.iter().filter(|(_, ok)| *ok).count() > resumed
            || self.identifies.len() > identified
    }
}

/// The fake. Dropping it stops both servers.
pub struct FakeDiscordBot {
    http: FakeServer,
    gateway_url: String,
    state: Arc<Mutex<State>>,
    _gateway: gateway::GatewayServer,
}

impl FakeDiscordBot {
    pub async fn start() -> Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        {
            let mut s = state.lock().unwrap();
            s.channels.insert(
                CHANNEL_ID,
                Chan {
                    id: CHANNEL_ID,
                    kind: 0,
                    guild: Some(GUILD_ID),
                    parent: None,
                    owner: None,
                    name: "general".into(),
                    recipient: None,
                },
            );
        }
        let gateway = gateway::GatewayServer::start(state.clone()).await?;
        let gateway_url = gateway.url();
        let http = FakeServer::spawn(rest::router(state.clone(), gateway_url.clone())).await?;
        Ok(Self {
            http,
            gateway_url,
            state,
            _gateway: gateway,
        })
    }

    /// The origin Chorus's `discord.api_url` points at.
    pub fn api_url(&self) -> String {
        self.http.url("").trim_end_matches('/').to_string()
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The `[discord]` section for a bot on this fake (`extra`: more keys).
    pub fn config_toml(&self, extra: &str) -> String {
        format!(
            "[discord]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nconnect_timeout_secs = 20\n{extra}\n",
            self.api_url()
        )
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses the next `n` message creates or edits with a 429 naming `retry_after`
    /// seconds.
    pub fn rate_limit_next(&self, n: usize, retry_after: f64) {
        let mut s = self.lock();
        for _ in 0..n {
            s.limit_next.push_back(retry_after);
        }
    }

    /// Refuses the next `n` interaction callbacks or webhook writes (`@original`
    /// edits, follow-ups) with a 429 naming `retry_after` seconds.
    pub fn rate_limit_answers_next(&self, n: usize, retry_after: f64) {
        let mut s = self.lock();
        for _ in 0..n {
            s.limit_answers_next.push_back(retry_after);
        }
    }

    /// Waits (bounded) until the bot is connected (READY sent) and its commands are
    /// registered.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        crate::wait::until(
            "the bot to connect and register its commands",
            timeout,
            || async {
                let s = self.lock();
                Ok((s.session.is_some() && !s.commands.is_empty()).then_some(()))
            },
        )
        .await
    }

    /// Sends op 7 RECONNECT on the live session: the bot should reconnect and RESUME.
    pub fn gateway_reconnect(&self) -> Result<()> {
        self.gateway_send(json!({"op": 7, "d": null}))
    }

    /// Sends op 9 INVALID SESSION (`d`: whether it may be resumed) on the live session.
    pub fn gateway_invalid_session(&self, resumable: bool) -> Result<()> {
        self.gateway_send(json!({"op": 9, "d": resumable}))
    }

    /// Drops the live session's TCP connection without a close frame.
    pub fn gateway_drop(&self) -> Result<()> {
        self.gateway_send(json!({"fake": "drop"}))
    }

    fn gateway_send(&self, frame: Value) -> Result<()> {
        let s = self.lock();
        s.session
            .as_ref()
            .context("no gateway session")?
            .send(frame)
            .ok()
            .context("the gateway session is gone")
    }

    /// Waits until `check` finds something in the state.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Result<T> {
        crate::wait::until(what, timeout, || {
            let found = check(&self.lock());
            async move { Ok(found) }
        })
        .await
    }

    /// A DM channel between `person` and the bot.
    pub fn dm_channel(&self, person: &Person) -> u64 {
        let mut s = self.lock();
        rest::dm_channel(&mut s, person.id)
    }

    /// `person` writes `content` in `channel` (a mention of the bot when `mention`).
    pub fn say(&self, channel: u64, person: &Person, content: &str, mention: bool) -> Result<u64> {
        let mut s = self.lock();
        let chan = s
            .channels
            .get(&channel)
            .cloned()
            .with_context(|| format!("no channel {channel}"))?;
        let id = s.new_id();
        let content = if mention {
            format!("<@{BOT_ID}> {content}")
        } else {
            content.to_string()
        };
        s.messages.insert(
            id,
            Msg {
                id,
                channel,
                author: person.id,
                content: content.clone(),
                components: json!([]),
                edits: Vec::new(),
                ephemeral: false,
                interaction: None,
            },
        );
        let mut event = fixture("message_create");
        event["id"] = json!(id.to_string());
        event["channel_id"] = json!(channel.to_string());
        event["author"] = person.user();
        event["content"] = json!(content);
        if mention {
            let mut bot = fixture("ready")["user"].clone();
            bot["id"] = json!(BOT_ID.to_string());
            event["mentions"] = json!([bot]);
        }
        if let Some(guild) = chan.guild {
            event["guild_id"] = json!(guild.to_string());
            let mut member = person.member();
            if let Some(m) = member.as_object_mut() {
                m.remove("user");
            }
            event["member"] = member;
        }
        s.dispatch("MESSAGE_CREATE", event)?;
        Ok(id)
    }

    fn interaction(
        &self,
        s: &mut State,
        kind: u8,
        channel: u64,
        person: &Person,
    ) -> Result<(Value, String)> {
        let chan = s
            .channels
            .get(&channel)
            .cloned()
            .with_context(|| format!("no channel {channel}"))?;
        let template = if kind == 3 {
            "interaction_component"
        } else {
            "interaction_command"
        };
        let mut event = fixture(template);
        let id = s.new_id();
        let token = format!("itoken-{id}");
        event["id"] = json!(id.to_string());
        event["token"] = json!(token);
        event["type"] = json!(kind);
        event["application_id"] = json!(BOT_ID.to_string());
        event["channel_id"] = json!(channel.to_string());
        event["channel"] = rest::channel_json(&chan);
        match chan.guild {
            Some(guild) => {
                event["guild_id"] = json!(guild.to_string());
                event["member"] = person.member();
            }
            None => {
                let o = event.as_object_mut().context("interaction object")?;
                o.remove("guild_id");
                o.remove("member");
                o.remove("guild_locale");
                event["user"] = person.user();
            }
        }
        s.answers.insert(token.clone(), Answer::default());
        s.answer_channels.insert(token.clone(), channel);
        Ok((event, token))
    }

    /// `person` uses `/name` with `options` (`[(name, value)]`) in `channel`;
    /// returns the interaction's token.
    pub fn slash(
        &self,
        channel: u64,
        person: &Person,
        name: &str,
        options: &[(&str, &str)],
    ) -> Result<String> {
        let mut s = self.lock();
        let (mut event, token) = self.interaction(&mut s, 2, channel, person)?;
        event["data"] = json!({
            "id": "771825006014889984",
            "name": name,
            "type": 1,
            "options": options.iter().map(|(n, v)| json!({"type": 3, "name": n, "value": v})).collect::<Vec<_>>(),
        });
        s.dispatch("INTERACTION_CREATE", event)?;
        Ok(token)
    }

    /// An interaction whose `data` is `data` as given (malformed on purpose).
    pub fn raw_interaction(
        &self,
        channel: u64,
        person: &Person,
        kind: u8,
        data: Value,
    ) -> Result<String> {
        let mut s = self.lock();
        let (mut event, token) = self.interaction(&mut s, kind, channel, person)?;
        event["data"] = data;
        s.dispatch("INTERACTION_CREATE", event)?;
        Ok(token)
    }

    /// `person` presses the button `custom_id` on message `message`.
    pub fn press(&self, message: u64, person: &Person, custom_id: &str) -> Result<String> {
        self.component(
            message,
            person,
            json!({"custom_id": custom_id, "component_type": 2}),
        )
    }

    /// `person` picks `value` in the select menu `custom_id` on `message`.
    pub fn select(
        &self,
        message: u64,
        person: &Person,
        custom_id: &str,
        value: &str,
    ) -> Result<String> {
        self.component(
            message,
            person,
            json!({"custom_id": custom_id, "component_type": 3, "values": [value]}),
        )
    }

    fn component(&self, message: u64, person: &Person, data: Value) -> Result<String> {
        let mut s = self.lock();
        let msg = s
            .messages
            .get(&message)
            .cloned()
            .with_context(|| format!("no message {message}"))?;
        let (mut event, token) = self.interaction(&mut s, 3, msg.channel, person)?;
        event["message"] = rest::message_json(&msg);
        event["data"] = data;
        s.dispatch("INTERACTION_CREATE", event)?;
        Ok(token)
    }

    /// Waits until the interaction `token` has been answered with text (its
    /// original response edited or sent), and returns that message.
    pub async fn answer_of(&self, token: &str, timeout: Duration) -> Result<(Answer, Msg)> {
        self.wait(
            &format!("an answer to the interaction {token}"),
            timeout,
            |s| {
                let a = s.answers.get(token)?;
                let m = s.messages.get(&a.original?)?;
                (!m.content.is_empty()).then(|| (a.clone(), m.clone()))
            },
        )
        .await
    }

    /// Every REST call the bot made, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }
}

/// Fails with what was seen.
pub fn ensure_buttons(msg: &Msg, expected: &[&str]) -> Result<()> {
    let got = msg.buttons();
    if got != expected {
        bail!(
            "message {} has buttons {got:?}, expected {expected:?}",
            msg.id
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{CHANNEL_ID, FakeDiscordBot, Person, fixture};
    use serenity::all::{GuildChannel, Interaction, Message, PrivateChannel, Ready};

    /// The events the fake dispatches (fixtures with ids, people and content filled
    /// in) are what serenity reads as those events.
    #[tokio::test]
    async fn dispatched_events_deserialize_into_serenity() {
        let fake = FakeDiscordBot::start().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        fake.lock().session = Some(tx);
        let alice = Person::new(100_000_000_000_000_001, "alice");
        let dm = fake.dm_channel(&alice);
        let mut next = || rx.try_recv().unwrap()["d"].clone();
        fake.say(CHANNEL_ID, &alice, "hi", true).unwrap();
        let m: Message = serde_json::from_value(next()).unwrap();
        assert!(m.mentions.iter().any(|u| u.id.get() == super::BOT_ID));
        fake.say(dm, &alice, "hi", false).unwrap();
        let m: Message = serde_json::from_value(next()).unwrap();
        assert!(m.guild_id.is_none());
        for channel in [CHANNEL_ID, dm] {
            fake.slash(channel, &alice, "ask", &[("question", "why?")])
                .unwrap();
            let event = next();
            let i: Interaction =
                serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{e}: {event:#}"));
            let command = i.command().unwrap();
            assert_eq!(command.user.id.get(), alice.id);
            assert_eq!(command.data.name, "ask");
        }
        let id = fake.say(dm, &alice, "x", false).unwrap();
        next();
        fake.press(id, &alice, "chorus:stop").unwrap();
        let event = next();
        let i: Interaction =
            serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{e}: {event:#}"));
        assert_eq!(i.message_component().unwrap().data.custom_id, "chorus:stop");
    }

    /// Every fixture the fake builds from is a valid serenity model value.
    #[test]
    fn fixtures_deserialize_into_serenity() {
        let message: Message = serde_json::from_value(fixture("message_create")).unwrap();
        assert_eq!(message.content, "Supa Hot");
        for name in ["interaction_command", "interaction_component"] {
            let i: Interaction =
                serde_json::from_value(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(i.token().len() > 5, "{name}");
        }
        for name in ["thread_channel", "text_channel"] {
            let _: GuildChannel =
                serde_json::from_value(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let _: PrivateChannel = serde_json::from_value(fixture("dm_channel")).unwrap();
        let ready: Ready = serde_json::from_value(fixture("ready")).unwrap();
        assert_eq!(ready.version, 10);
        let limit = fixture("rate_limit");
        assert!(limit["retry_after"].as_f64().is_some());
    }
}
