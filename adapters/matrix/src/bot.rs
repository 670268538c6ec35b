//! The event handlers: invites, messages and reactions, turned into core chat calls
//! whose outcomes the kit delivers (`RenderHub::deliver`), each on the surface's
//! tracked tasks.

use crate::allow::Allowlist;
use crate::key::{channel_key, parse_channel_key};
use crate::mention::{BotNames, Incoming, addressed, strip_reply_fallback};
use crate::sink::ThreadTails;
use chorus_core::Core;
use chorus_core::Identity;
use chorus_core::chat::{ChatContext, Control, RenderHub, SurfaceHandle};
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageFormat, MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedUserId, UserId};
use matrix_sdk::{Client, Room, RoomState};
use std::sync::Arc;
use std::time::Duration;

/// The surface's name in bindings and identities.
pub const SURFACE: &str = "matrix";

/// Everything the handlers share.
pub struct Bot {
    pub core: Core,
    pub hub: RenderHub,
    pub client: Client,
    pub own_id: OwnedUserId,
    pub names: BotNames,
    pub allow: Allowlist,
    pub prefix: String,
    pub tails: ThreadTails,
    /// The surface's tasks: every handler runs on it, never on a bare `tokio::spawn`.
    pub surface: SurfaceHandle,
}

impl Bot {
    /// Registers the handlers; events of syncs after this call reach them.
    pub fn register(self: &Arc<Self>) {
        let bot = self.clone();
        self.client
            .add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
                let bot = bot.clone();
                async move { bot.on_message(ev, room).await }
            });
        let bot = self.clone();
        self.client
            .add_event_handler(move |ev: OriginalSyncReactionEvent, room: Room| {
                let bot = bot.clone();
                async move { bot.on_reaction(ev, room).await }
            });
        let bot = self.clone();
        self.client
            .add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
                let bot = bot.clone();
                async move { bot.on_invite(ev, room).await }
            });
    }

    /// Whether `sender` in `room` may use the bot (logged at debug when not).
    fn admits(&self, room: &Room, sender: &UserId) -> bool {
        if sender == self.own_id {
            return false;
        }
        if !self.allow.allows_room(room.room_id().as_str()) {
            tracing::debug!(room = %room.room_id(), "matrix: ignoring an event in a room not on the allowlist");
            return false;
        }
        if !self.allow.allows_user(sender.as_str()) {
            tracing::debug!(sender = %sender, room = %room.room_id(), "matrix: ignoring a sender not on the allowlist");
            return false;
        }
        true
    }

    async fn on_message(self: Arc<Self>, ev: OriginalSyncRoomMessageEvent, room: Room) {
        if room.state() != RoomState::Joined || !self.admits(&room, &ev.sender) {
            return;
        }
        let MessageType::Text(text) = &ev.content.msgtype else {
            return;
        };
        let (root, is_reply) = match &ev.content.relates_to {
            // An edit of an earlier question is not a new question.
            Some(Relation::Replacement(_)) => return,
            Some(Relation::Thread(t)) => (t.event_id.clone(), !t.is_falling_back),
            // A reply (clients without threads) to one of the bot's messages goes on in
            // that message's conversation; any other reply starts a thread of its own.
            Some(Relation::Reply(reply)) => (
                self.thread_of_bot_message(&room, &reply.in_reply_to.event_id)
                    .await
                    .unwrap_or_else(|| ev.event_id.clone()),
                true,
            ),
            _ => (ev.event_id.clone(), false),
        };
        let body = if is_reply {
            strip_reply_fallback(&text.body)
        } else {
            &text.body
        };
        let html = text
            .formatted
            .as_ref()
            .filter(|f| f.format == MessageFormat::Html)
            .map(|f| f.body.as_str());
        let mentions_bot = ev
            .content
            .mentions
            .as_ref()
            .is_some_and(|m| m.user_ids.contains(&self.own_id));
        let direct = is_direct(&room).await;
        let incoming = Incoming {
            body,
            html,
            mentions_bot,
            direct,
        };
        let Some(question) = addressed(&self.names, &incoming, &self.prefix) else {
            return;
        };
        let key = channel_key(room.room_id(), &root);
        self.tails.record(&key, ev.event_id.clone());
        let ctx = self.context(&room, &ev.sender, key).await;
        tracing::debug!(room = %room.room_id(), sender = %ev.sender, channel = %ctx.channel_key, "matrix: message for the bot");
        // Core may take a while (a model list, a link); the sync loop must not wait.
        let bot = self.clone();
        self.surface.spawn(async move {
            let outcome = bot.core.chat_text(&ctx, &question, &bot.hub).await;
            bot.hub.deliver(&ctx.channel_key, outcome).await;
        });
    }

    /// The thread root of the binding a message the bot posted in `room` belongs to.
    async fn thread_of_bot_message(&self, room: &Room, message: &EventId) -> Option<OwnedEventId> {
        let key = self.hub.channel_of_message(message.as_str()).await?;
        let (room_id, root) = parse_channel_key(&key)?;
        (room_id == room.room_id()).then_some(root)
    }

    async fn on_reaction(self: Arc<Self>, ev: OriginalSyncReactionEvent, room: Room) {
        if room.state() != RoomState::Joined || !self.admits(&room, &ev.sender) {
            return;
        }
        let Some(control) = Control::from_reaction(&ev.content.relates_to.key) else {
            return;
        };
        let bot = self.clone();
        self.surface.spawn(async move {
            let target = ev.content.relates_to.event_id.as_str();
            let Some(key) = bot.hub.channel_of_message(target).await else {
                tracing::debug!(event = %target, "matrix: reaction on a message that is not a reply of the bot");
                return;
            };
            // The binding must be in this room: a reaction cannot steer another room.
            if parse_channel_key(&key).is_none_or(|(r, _)| r != room.room_id()) {
                return;
            }
            let ctx = bot.context(&room, &ev.sender, key).await;
            tracing::debug!(channel = %ctx.channel_key, ?control, "matrix: reaction control");
            let outcome = bot
                .core
                .chat_command(&ctx, control.command(), &bot.hub)
                .await;
            bot.hub.deliver(&ctx.channel_key, outcome).await;
        });
    }

    async fn on_invite(self: Arc<Self>, ev: StrippedRoomMemberEvent, room: Room) {
        if ev.state_key != self.own_id || ev.content.membership != MembershipState::Invite {
            return;
        }
        let bot = self.clone();
        self.surface
            .spawn(async move { bot.answer_invite(room, ev.sender).await });
    }

    /// Joins when the inviter (by user id or their own server) and the room are
    /// allowed, otherwise rejects the invite.
    pub async fn answer_invite(&self, room: Room, inviter: OwnedUserId) {
        let room_id = room.room_id().to_owned();
        let allowed =
            self.allow.allows_user(inviter.as_str()) && self.allow.allows_room(room_id.as_str());
        if !allowed {
            tracing::info!(room = %room_id, inviter = %inviter, "matrix: rejecting an invite from outside the allowlist");
            if let Err(e) = room.leave().await {
                tracing::warn!(room = %room_id, error = %e, "matrix: cannot reject the invite");
            }
            return;
        }
        // Synapse may answer a join right after the invite before it knows the invite.
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=5 {
            match room.join().await {
                Ok(()) => {
                    tracing::info!(room = %room_id, inviter = %inviter, "matrix: joined on invite");
                    return;
                }
                Err(e) if attempt < 5 => {
                    tracing::debug!(room = %room_id, error = %e, attempt, "matrix: join failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::warn!(room = %room_id, error = %e, "matrix: cannot join the room");
                }
            }
        }
    }

    async fn context(&self, room: &Room, sender: &UserId, channel_key: String) -> ChatContext {
        let display_name = match room.get_member_no_sync(sender).await {
            Ok(Some(member)) => member.display_name().map(str::to_string),
            _ => None,
        };
        ChatContext {
            surface: SURFACE.into(),
            channel_key,
            identity: Identity::new(SURFACE, sender.as_str()),
            display_name,
        }
    }
}

/// A direct chat: marked as one (`m.direct`), or just the bot and one person. Just
/// after the bot joined, the room's summary may not count it yet (a first message
/// right after the join would go unanswered): then the joined members are asked for.
async fn is_direct(room: &Room) -> bool {
    if room.is_direct().await.unwrap_or(false) || room.joined_members_count() == 2 {
        return true;
    }
    room.joined_members_count() < 2
        && room
            .members(matrix_sdk::RoomMemberships::JOIN)
            .await
            .is_ok_and(|members| members.len() == 2)
}
