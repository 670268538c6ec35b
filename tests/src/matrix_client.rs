//! [`MatrixUser`]: a human test user on the test [`Synapse`], driven by matrix-sdk as
//! a separate client (a real client library that is not ours), with its own SQLite
//! crypto store in a temp dir and a background sync task.
//!
//! It creates rooms (a DM, a group room, an encrypted room), sends what a person
//! would (plain text, a mention of the bot, a message in a thread, a reaction), and
//! records every `m.room.message` it sees, decrypted where the room is encrypted.
//! [`MatrixUser::replies`] turns those into what a person reads: each message of a
//! sender with its `m.replace` edits applied, and how many edits it got. It also
//! records typing notices.

use crate::synapse::{MatrixAccount, Synapse};
use crate::wait;
use anyhow::{Context, Result, bail};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::deserialized_responses::EncryptionInfo;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::api::client::filter::FilterDefinition;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, Reply as RichReply, Thread};
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::typing::TypingEventContent;
use matrix_sdk::ruma::events::{InitialStateEvent, Mentions, SyncEphemeralRoomEvent};
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use matrix_sdk::{Client, RoomMemberships};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// One `m.room.message` as this user received it (after decryption).
#[derive(Clone, Debug)]
pub struct SeenMessage {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    /// `body` (for an edit: the body of `m.new_content`).
    pub body: String,
    /// `formatted_body` (HTML) when there is one (for an edit: of `m.new_content`).
    pub html: Option<String>,
    /// `m.msgtype` (`m.text`, `m.notice`...), of `m.new_content` for an edit.
    pub msgtype: String,
    /// The root of the `m.thread` this message belongs to.
    pub thread_root: Option<OwnedEventId>,
    /// For an `m.replace` edit: the event it edits.
    pub replaces: Option<OwnedEventId>,
    /// The event arrived encrypted (`m.room.encrypted`) and was decrypted.
    pub encrypted: bool,
}

/// An `m.typing` update: who types in a room, and how many messages of each typer
/// this user had seen in that room when it arrived.
#[derive(Clone, Debug)]
pub struct SeenTyping {
    pub room_id: OwnedRoomId,
    pub user_ids: Vec<OwnedUserId>,
    /// Messages (originals and edits) seen in the room before this update.
    pub messages_before: usize,
}

/// A message as a person reads it: the original with its edits applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub event_id: OwnedEventId,
    /// The text after the last edit (`body`).
    pub text: String,
    /// The HTML after the last edit, if any.
    pub html: Option<String>,
    /// How many `m.replace` edits it got.
    pub edits: usize,
    /// The original and every edit arrived encrypted.
    pub encrypted: bool,
}

/// A human user logged in with matrix-sdk, syncing in the background until dropped.
pub struct MatrixUser {
    pub client: Client,
    pub account: MatrixAccount,
    seen: Arc<Mutex<Vec<SeenMessage>>>,
    typing: Arc<Mutex<Vec<SeenTyping>>>,
    sync: JoinHandle<()>,
    _store: TempDir,
}

impl MatrixUser {
    /// Registers `{localpart}-{random}` as a human (no rate limit) and logs it in.
    pub async fn new_human(synapse: &Synapse, localpart: &str) -> Result<Self> {
        let account = synapse
            .register_human(&format!("{localpart}-{}", crate::synapse::short_id()))
            .await?;
        Self::login(synapse, account).await
    }

    /// Logs `account` in with a new device and a fresh crypto store, syncs once (so
    /// its device keys are uploaded before anyone encrypts for it), then keeps
    /// syncing in the background.
    pub async fn login(synapse: &Synapse, account: MatrixAccount) -> Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("chorus-matrix-human-")
            .tempdir()?;
        let client = Client::builder()
            .homeserver_url(synapse.url())
            .sqlite_store(store.path(), None)
            .build()
            .await
            .context("matrix-sdk: building the human's client")?;
        client
            .matrix_auth()
            .login_username(&account.user_id, &account.password)
            .initial_device_display_name("chorus e2e human")
            .await
            .with_context(|| format!("matrix-sdk: login of {}", account.user_id))?;
        let seen: Arc<Mutex<Vec<SeenMessage>>> = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        client.add_event_handler(
            move |event: OriginalSyncRoomMessageEvent,
                  room: Room,
                  encryption: Option<EncryptionInfo>| {
                let recorder = recorder.clone();
                async move {
                    let message = seen_message(room.room_id(), event, encryption.is_some());
                    let mut seen = recorder.lock().expect("seen lock");
                    if !seen.iter().any(|m| m.event_id == message.event_id) {
                        seen.push(message);
                    }
                }
            },
        );
        let typing: Arc<Mutex<Vec<SeenTyping>>> = Arc::new(Mutex::new(Vec::new()));
        let (typing_log, messages) = (typing.clone(), seen.clone());
        client.add_event_handler(
            move |event: SyncEphemeralRoomEvent<TypingEventContent>, room: Room| {
                let (typing_log, messages) = (typing_log.clone(), messages.clone());
                async move {
                    let messages_before = messages
                        .lock()
                        .expect("seen lock")
                        .iter()
                        .filter(|m| m.room_id == room.room_id())
                        .count();
                    typing_log.lock().expect("typing lock").push(SeenTyping {
                        room_id: room.room_id().to_owned(),
                        user_ids: event.content.user_ids,
                        messages_before,
                    });
                }
            },
        );
        let settings = sync_settings();
        client
            .sync_once(settings.clone())
            .await
            .context("matrix-sdk: first sync")?;
        client
            .encryption()
            .wait_for_e2ee_initialization_tasks()
            .await;
        let syncing = client.clone();
        let sync = tokio::spawn(async move {
            loop {
                if let Err(e) = syncing.sync(settings.clone()).await {
                    eprintln!("matrix test client: sync failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Ok(Self {
            client,
            account,
            seen,
            typing,
            sync,
            _store: store,
        })
    }

    pub fn user_id(&self) -> &str {
        &self.account.user_id
    }

    /// Creates a room inviting `invite`: `direct` marks it a DM (`is_direct`, and the
    /// `m.direct` account data), `encrypted` sets `m.room.encryption` (Megolm).
    pub async fn create_room(
        &self,
        invite: &[&str],
        direct: bool,
        encrypted: bool,
    ) -> Result<OwnedRoomId> {
        let mut request = CreateRoom::new();
        request.invite = invite
            .iter()
            .map(|u| UserId::parse(*u).with_context(|| format!("bad user id {u}")))
            .collect::<Result<_>>()?;
        request.is_direct = direct;
        request.preset = Some(RoomPreset::PrivateChat);
        if encrypted {
            request.initial_state = vec![
                InitialStateEvent::with_empty_state_key(
                    RoomEncryptionEventContent::with_recommended_defaults(),
                )
                .to_raw_any(),
            ];
        }
        let room = self
            .client
            .create_room(request)
            .await
            .context("matrix-sdk: create_room")?;
        Ok(room.room_id().to_owned())
    }

    /// A DM with `bot` (`is_direct`, not encrypted).
    pub async fn create_dm(&self, bot: &str) -> Result<OwnedRoomId> {
        self.create_room(&[bot], true, false).await
    }

    /// Joins a room this user was invited to.
    pub async fn join(&self, room_id: &RoomId) -> Result<()> {
        self.client
            .join_room_by_id(room_id)
            .await
            .with_context(|| format!("matrix-sdk: {} joining {room_id}", self.user_id()))?;
        Ok(())
    }

    /// The room as this client knows it (after its creation or join reached sync).
    pub async fn room(&self, room_id: &RoomId) -> Result<Room> {
        wait::until(
            &format!("{} to know room {room_id}", self.user_id()),
            Duration::from_secs(20),
            || async { Ok(self.client.get_room(room_id)) },
        )
        .await
    }

    /// Waits until `user_id` is a joined member of the room as this client's sync
    /// sees it (e.g. the bot accepted its invite).
    pub async fn wait_joined(
        &self,
        room_id: &RoomId,
        user_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        let room = self.room(room_id).await?;
        let user = UserId::parse(user_id)?;
        wait::until(&format!("{user_id} to join {room_id}"), timeout, || async {
            let joined = room.members_no_sync(RoomMemberships::JOIN).await?;
            Ok(joined.iter().any(|m| m.user_id() == user).then_some(()))
        })
        .await?;
        // Make sure the member list is complete before an encrypted send: the SDK
        // shares the room key with every joined member's devices.
        room.sync_members().await?;
        Ok(())
    }

    /// Sends `content` to the room and returns its event id.
    pub async fn send(
        &self,
        room_id: &RoomId,
        content: RoomMessageEventContent,
    ) -> Result<OwnedEventId> {
        let room = self.room(room_id).await?;
        let sent = room
            .send(content)
            .await
            .with_context(|| format!("matrix-sdk: {} sending to {room_id}", self.user_id()))?;
        Ok(sent.response.event_id)
    }

    /// A plain text message.
    pub async fn send_text(&self, room_id: &RoomId, text: &str) -> Result<OwnedEventId> {
        self.send(room_id, RoomMessageEventContent::text_plain(text))
            .await
    }

    /// `text` addressed to `bot` the way Element does it: the bot's display name as a
    /// pill (`<a href="https://matrix.to/#/@bot:…">name</a>`) in front, and the bot
    /// in `m.mentions`.
    pub async fn send_mention(
        &self,
        room_id: &RoomId,
        bot: &str,
        bot_name: &str,
        text: &str,
    ) -> Result<OwnedEventId> {
        let bot_id = UserId::parse(bot)?;
        let plain = format!("{bot_name}: {text}");
        let html = format!(
            "<a href=\"https://matrix.to/#/{bot}\">{}</a>: {}",
            html_escape(bot_name),
            html_escape(text)
        );
        let content = RoomMessageEventContent::text_html(plain, html)
            .add_mentions(Mentions::with_user_ids([bot_id]));
        self.send(room_id, content).await
    }

    /// A message in the thread of `root` (`m.relates_to` with `rel_type: m.thread`).
    /// With `mention`, the bot `(user id, display name)` is mentioned as in
    /// [`MatrixUser::send_mention`].
    pub async fn send_in_thread(
        &self,
        room_id: &RoomId,
        root: &EventId,
        text: &str,
        mention: Option<(&str, &str)>,
    ) -> Result<OwnedEventId> {
        let mut content = match mention {
            Some((bot, name)) => RoomMessageEventContent::text_html(
                format!("{name}: {text}"),
                format!(
                    "<a href=\"https://matrix.to/#/{bot}\">{}</a>: {}",
                    html_escape(name),
                    html_escape(text)
                ),
            )
            .add_mentions(Mentions::with_user_ids([UserId::parse(bot)?])),
            None => RoomMessageEventContent::text_plain(text),
        };
        content.relates_to = Some(Relation::Thread(Thread::without_fallback(root.to_owned())));
        self.send(room_id, content).await
    }

    /// A rich reply to `event_id` outside any thread (`m.in_reply_to`), as clients
    /// without thread support send it, with the replied-to `sender` in `m.mentions`.
    pub async fn send_reply(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        sender: &str,
        text: &str,
    ) -> Result<OwnedEventId> {
        let mut content = RoomMessageEventContent::text_plain(text)
            .add_mentions(Mentions::with_user_ids([UserId::parse(sender)?]));
        content.relates_to = Some(Relation::Reply(RichReply::with_event_id(
            event_id.to_owned(),
        )));
        self.send(room_id, content).await
    }

    /// Reacts to `event_id` with `key` (an `m.annotation`, e.g. "⏹️").
    pub async fn react(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        key: &str,
    ) -> Result<OwnedEventId> {
        let room = self.room(room_id).await?;
        let sent = room
            .send(ReactionEventContent::new(Annotation::new(
                event_id.to_owned(),
                key.to_string(),
            )))
            .await
            .with_context(|| format!("matrix-sdk: reacting {key} to {event_id}"))?;
        Ok(sent.response.event_id)
    }

    /// Every message this user has seen so far, in arrival order.
    pub fn seen(&self) -> Vec<SeenMessage> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Every typing update this user has seen so far, in arrival order.
    pub fn typing(&self) -> Vec<SeenTyping> {
        self.typing.lock().expect("typing lock").clone()
    }

    /// The messages of `sender` in the room, in order, with their edits applied.
    /// `thread`: only those in the thread of that root (`None`: every message of
    /// `sender` in the room, threaded or not).
    pub fn replies(&self, room_id: &RoomId, sender: &str, thread: Option<&EventId>) -> Vec<Reply> {
        replies_of(&self.seen(), room_id, sender, thread)
    }

    /// The current texts of [`MatrixUser::replies`].
    pub fn reply_texts(
        &self,
        room_id: &RoomId,
        sender: &str,
        thread: Option<&EventId>,
    ) -> Vec<String> {
        self.replies(room_id, sender, thread)
            .into_iter()
            .map(|r| r.text)
            .collect()
    }

    /// Polls `check` on what this user has seen until it returns `Some`, failing
    /// after `timeout` with `what` and the messages seen in the room.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        room_id: &RoomId,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .seen()
                    .iter()
                    .filter(|m| m.room_id == room_id)
                    .map(|m| {
                        format!(
                            "{} {} thread={:?} replaces={:?}: {:?}",
                            m.event_id,
                            m.sender,
                            m.thread_root,
                            m.replaces,
                            preview(&m.body)
                        )
                    })
                    .collect();
                bail!(
                    "timed out after {timeout:?} waiting for {what}; {} saw in {room_id}:\n{}",
                    self.user_id(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the thread of `root` holds a message of `sender` and returns the
    /// first one.
    pub async fn first_reply(
        &self,
        room_id: &RoomId,
        sender: &str,
        root: &EventId,
        timeout: Duration,
    ) -> Result<Reply> {
        self.wait_until(
            &format!("a message of {sender} in the thread of {root}"),
            room_id,
            timeout,
            |me| me.replies(room_id, sender, Some(root)).into_iter().next(),
        )
        .await
    }
}

impl Drop for MatrixUser {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

/// Sync with a timeline limit high enough that a bot's burst of edits between two
/// syncs never makes the timeline `limited` (which would skip events).
fn sync_settings() -> SyncSettings {
    let mut filter = FilterDefinition::default();
    filter.room.timeline.limit = Some(UInt::from(500u32));
    SyncSettings::default()
        .timeout(Duration::from_secs(5))
        .filter(Filter::FilterDefinition(filter))
}

fn seen_message(
    room_id: &RoomId,
    event: OriginalSyncRoomMessageEvent,
    encrypted: bool,
) -> SeenMessage {
    let (msgtype, replaces, thread_root) = match event.content.relates_to {
        Some(Relation::Replacement(r)) => (r.new_content.msgtype, Some(r.event_id), None),
        Some(Relation::Thread(t)) => (event.content.msgtype, None, Some(t.event_id)),
        _ => (event.content.msgtype, None, None),
    };
    let html = match &msgtype {
        MessageType::Text(t) => t.formatted.as_ref().map(|f| f.body.clone()),
        MessageType::Notice(n) => n.formatted.as_ref().map(|f| f.body.clone()),
        MessageType::Emote(e) => e.formatted.as_ref().map(|f| f.body.clone()),
        _ => None,
    };
    SeenMessage {
        room_id: room_id.to_owned(),
        event_id: event.event_id,
        sender: event.sender,
        body: msgtype.body().to_string(),
        html,
        msgtype: msgtype.msgtype().to_string(),
        thread_root,
        replaces,
        encrypted,
    }
}

/// Applies edits in arrival order (only the sender's own edits count, as clients do).
pub fn replies_of(
    seen: &[SeenMessage],
    room_id: &RoomId,
    sender: &str,
    thread: Option<&EventId>,
) -> Vec<Reply> {
    let mine = |m: &&SeenMessage| m.room_id == room_id && m.sender.as_str() == sender;
    let mut replies: Vec<Reply> = seen
        .iter()
        .filter(mine)
        .filter(|m| m.replaces.is_none())
        .filter(|m| thread.is_none() || m.thread_root.as_deref() == thread)
        .map(|m| Reply {
            event_id: m.event_id.clone(),
            text: m.body.clone(),
            html: m.html.clone(),
            edits: 0,
            encrypted: m.encrypted,
        })
        .collect();
    for edit in seen.iter().filter(mine) {
        let Some(target) = &edit.replaces else {
            continue;
        };
        if let Some(reply) = replies.iter_mut().find(|r| &r.event_id == target) {
            reply.text = edit.body.clone();
            reply.html = edit.html.clone();
            reply.edits += 1;
            reply.encrypted &= edit.encrypted;
        }
    }
    replies
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The first 120 characters of `text`, for failure messages.
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}
