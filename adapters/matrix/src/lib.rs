//! The Matrix surface of Chorus: a matrix-sdk bot that answers in threads, streams
//! replies by editing them, takes reactions as controls, and works in encrypted rooms.
//!
//! [`start`] logs in (or restores the saved device), syncs once to skip what happened
//! while it was away, registers its handlers, resumes unfinished renders, and keeps
//! syncing until [`MatrixHandle::shutdown`].

mod allow;
mod bot;
pub mod config;
mod content;
mod error;
mod key;
mod mention;
mod reaction;
mod session;
mod sink;
mod sync;

pub use allow::Allowlist;
pub use error::MatrixError;
pub use key::{channel_key, parse_channel_key};
pub use sink::{MatrixSink, MatrixSinkFactory};

use crate::config::MatrixConfig;
use bot::{Bot, SURFACE};
use chorus_core::Core;
use chorus_core::chat::RenderHub;
use mention::BotNames;
use sink::{MatrixLimits, ThreadTails};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The running Matrix surface.
pub struct MatrixHandle {
    cancel: CancellationToken,
    sync_task: tokio::task::JoinHandle<()>,
    hub: RenderHub,
}

impl MatrixHandle {
    /// Stops receiving: no new message reaches core after this (the sync ends).
    pub fn stop_receiving(&self) {
        self.cancel.cancel();
    }

    /// Stops syncing and waits for the sync loop and the renderers in flight; their
    /// unfinished renders resume on the next start. Call before the core shuts down.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.sync_task.await {
            tracing::warn!(error = %e, "matrix: the sync task ended badly");
        }
        self.hub.shutdown().await;
    }
}

/// Connects the bot and starts serving. Fails (naming the homeserver and the user,
/// never the secret) when the login or the first sync does.
pub async fn start(
    core: Core,
    config: &MatrixConfig,
    data_dir: &Path,
) -> Result<MatrixHandle, MatrixError> {
    let client = session::connect(config, data_dir).await?;
    let own_id = client
        .user_id()
        .ok_or_else(|| MatrixError::Login {
            homeserver: config.homeserver_url.clone(),
            user: config.user_id.clone(),
            message: "no user id after login".into(),
        })?
        .to_owned();
    // Skips the backlog: events of this sync reach no handler, so messages sent while
    // the bot was away are never answered late. It also uploads the device's keys.
    let first = sync::first_sync(&client)
        .await
        .map_err(|message| MatrixError::Sync {
            homeserver: config.homeserver_url.clone(),
            message,
        })?;
    client
        .encryption()
        .wait_for_e2ee_initialization_tasks()
        .await;
    let display_name = client.account().get_display_name().await.ok().flatten();
    let tails = ThreadTails::default();
    let limits = MatrixLimits {
        max_bytes: config.max_message_bytes,
        min_edit_interval: Duration::from_millis(config.min_edit_interval_ms),
        max_edits_per_message: config.max_edits_per_message,
    };
    let sinks = Arc::new(MatrixSinkFactory::new(
        client.clone(),
        tails.clone(),
        limits,
    ));
    let hub = core.render_hub(SURFACE, &config.command_prefix, sinks.clone());
    let bot = Arc::new(Bot {
        core,
        hub: hub.clone(),
        client: client.clone(),
        names: BotNames::new(own_id.as_str(), display_name.as_deref()),
        own_id,
        allow: Allowlist::from_config(config),
        prefix: config.command_prefix.clone(),
        tails,
        sinks,
    });
    bot.register();
    // Invites that arrived while the bot was away (their events went by in the first sync).
    for room in client.invited_rooms() {
        match room.invite_details().await {
            Ok(invite) => {
                let bot = bot.clone();
                tokio::spawn(async move { bot.answer_invite(room, invite.inviter_id).await });
            }
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "matrix: cannot read a pending invite")
            }
        }
    }
    hub.resume_unfinished().await;
    let cancel = CancellationToken::new();
    let sync_task = tokio::spawn(sync::sync_forever(client, first, cancel.clone()));
    tracing::info!(user = %config.user_id, homeserver = %config.homeserver_url, "matrix: the bot is listening");
    Ok(MatrixHandle {
        cancel,
        sync_task,
        hub,
    })
}
