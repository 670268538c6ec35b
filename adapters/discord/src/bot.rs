//! The gateway's events turned into core chat calls: messages (DMs always; in guilds a
//! mention opens a thread, and the bot's threads need no mention) and reactions as
//! controls. Each runs on the surface's tracked tasks; outcomes go out through the
//! kit (`RenderHub::deliver`).

use crate::addressing::{self, Place};
use crate::allow::{Allowlist, Origin};
use crate::sink::DiscordSinkFactory;
use chorus_core::Core;
use chorus_core::Identity;
use chorus_core::chat::{ChatContext, Control, RenderHub, SurfaceHandle};
use serenity::all::{
    Channel, ChannelId, ChannelType, CreateThread, Http, Message, MessageType, Reaction,
    ReactionType, User, UserId,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The surface's name in bindings and identities: the same platform name as the
/// Discord login of the web (`sso`), so a person who signed in with Discord is the
/// same account here.
pub const SURFACE: &str = "discord";

/// Channels whose kind is remembered before the memo starts over.
const MAX_PLACES: usize = 10_000;

/// Everything the handlers share.
pub struct Bot {
    pub core: Core,
    pub hub: RenderHub,
    pub surface: SurfaceHandle,
    pub allow: Allowlist,
    pub prefix: String,
    pub sinks: Arc<DiscordSinkFactory>,
    /// serenity's REST client (the test override applied), set when the client exists.
    pub http: OnceLock<Arc<Http>>,
    /// The bot's own user id, from READY.
    pub me: OnceLock<UserId>,
    /// What each channel seen is (DM, thread, whose), so a message needs no lookup.
    pub places: Mutex<HashMap<u64, Place>>,
}

impl Bot {
    pub fn http(&self) -> Option<&Arc<Http>> {
        self.http.get()
    }

    fn me(&self) -> Option<UserId> {
        self.me.get().copied()
    }

    pub fn remember(&self, channel: u64, place: Place) {
        self.sinks.remember(channel, place.dm);
        let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        if places.len() >= MAX_PLACES {
            places.clear();
        }
        places.insert(channel, place);
    }

    /// What `channel` is: remembered, or asked of Discord once.
    pub async fn place(&self, channel: ChannelId, guild: bool) -> Option<Place> {
        if !guild {
            return Some(Place::DM);
        }
        let known = self
            .places
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&channel.get())
            .copied();
        if known.is_some() {
            return known;
        }
        let http = self.http()?;
        match http.get_channel(channel).await {
            Ok(Channel::Guild(c)) => {
                let thread = matches!(
                    c.kind,
                    ChannelType::PublicThread | ChannelType::PrivateThread
                );
                let place = Place {
                    dm: false,
                    thread,
                    ours: thread && c.owner_id.is_some() && c.owner_id == self.me(),
                    parent: if thread {
                        c.parent_id.map(|p| p.get())
                    } else {
                        None
                    },
                };
                self.remember(channel.get(), place);
                Some(place)
            }
            Ok(Channel::Private(_)) => {
                self.remember(channel.get(), Place::DM);
                Some(Place::DM)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "discord: cannot look up a channel");
                None
            }
        }
    }

    pub fn context(&self, user: &User, channel_key: String) -> ChatContext {
        ChatContext {
            surface: SURFACE.into(),
            channel_key,
            identity: Identity::new(SURFACE, user.id.get().to_string()),
            display_name: Some(
                user.global_name
                    .clone()
                    .unwrap_or_else(|| user.name.clone()),
            ),
        }
    }

    pub async fn on_message(self: Arc<Self>, msg: Message) {
        if msg.author.bot || !matches!(msg.kind, MessageType::Regular | MessageType::InlineReply) {
            return;
        }
        let Some(me) = self.me() else { return };
        let Some(place) = self.place(msg.channel_id, msg.guild_id.is_some()).await else {
            return;
        };
        if place.dm {
            self.remember(msg.channel_id.get(), Place::DM);
        }
        let roles: Vec<u64> = msg
            .member
            .as_ref()
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default();
        let origin = Origin {
            guild: msg.guild_id.map(|g| g.get()),
            channel: Some(place.parent.unwrap_or(msg.channel_id.get())),
            user: msg.author.id.get(),
            roles: &roles,
        };
        if !self.allow.admits(&origin) {
            tracing::debug!(user = %msg.author.id, channel = %msg.channel_id, "discord: ignoring a sender outside the allowlist");
            return;
        }
        let mentioned = msg.mentions.iter().any(|u| u.id == me);
        let Some(text) =
            addressing::addressed(&place, mentioned, &msg.content, me.get(), &self.prefix)
        else {
            return;
        };
        let key = if place.dm || place.thread {
            msg.channel_id.get()
        } else {
            // A mention in a channel: the conversation gets a thread of its own.
            match self.open_thread(msg.channel_id, Some(&msg), &text).await {
                Some(thread) => thread,
                None => return,
            }
        };
        let ctx = self.context(&msg.author, key.to_string());
        tracing::debug!(channel = %ctx.channel_key, user = %msg.author.id, "discord: message for the bot");
        let outcome = self.core.chat_text(&ctx, &text, &self.hub).await;
        self.hub.deliver(&ctx.channel_key, outcome).await;
    }

    /// Opens a thread in `channel` (from `message` when given), named after `text`;
    /// its id, remembered as one of the bot's threads.
    pub async fn open_thread(
        &self,
        channel: ChannelId,
        message: Option<&Message>,
        text: &str,
    ) -> Option<u64> {
        let http = self.http()?;
        let builder = CreateThread::new(addressing::thread_name(text))
            .auto_archive_duration(serenity::all::AutoArchiveDuration::OneDay);
        let made = match message {
            Some(m) => {
                channel
                    .create_thread_from_message(http, m.id, builder)
                    .await
            }
            None => {
                channel
                    .create_thread(http, builder.kind(ChannelType::PublicThread))
                    .await
            }
        };
        match made {
            Ok(thread) => {
                self.remember(
                    thread.id.get(),
                    Place {
                        dm: false,
                        thread: true,
                        ours: true,
                        parent: Some(channel.get()),
                    },
                );
                Some(thread.id.get())
            }
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "discord: cannot open a thread");
                None
            }
        }
    }

    pub async fn on_reaction(self: Arc<Self>, reaction: Reaction) {
        let (Some(user_id), Some(me)) = (reaction.user_id, self.me()) else {
            return;
        };
        if user_id == me {
            return;
        }
        let ReactionType::Unicode(emoji) = &reaction.emoji else {
            return;
        };
        let Some(control) = Control::from_reaction(emoji) else {
            return;
        };
        let Some(key) = self
            .hub
            .channel_of_message(&reaction.message_id.get().to_string())
            .await
        else {
            return;
        };
        // A reaction steers the reply it is on, in that reply's channel only.
        if key != reaction.channel_id.get().to_string() {
            return;
        }
        let place = self
            .place(reaction.channel_id, reaction.guild_id.is_some())
            .await
            .unwrap_or(Place::DM);
        let roles: Vec<u64> = reaction
            .member
            .as_ref()
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default();
        let origin = Origin {
            guild: reaction.guild_id.map(|g| g.get()),
            channel: Some(place.parent.unwrap_or(reaction.channel_id.get())),
            user: user_id.get(),
            roles: &roles,
        };
        if !self.allow.admits(&origin) {
            return;
        }
        let user = match reaction.member.as_ref() {
            Some(m) => m.user.clone(),
            None => match self.http() {
                Some(http) => match http.get_user(user_id).await {
                    Ok(u) => u,
                    Err(_) => return,
                },
                None => return,
            },
        };
        let ctx = self.context(&user, key);
        let outcome = self
            .core
            .chat_command(&ctx, control.command(), &self.hub)
            .await;
        self.hub.deliver(&ctx.channel_key, outcome).await;
    }
}
