//! The Matrix surface of Chorus: a matrix-sdk bot that answers in threads, streams
//! replies by editing them, takes reactions as controls, and works in encrypted rooms.
//!
//! [`start`] logs in (or restores the saved device), syncs once to skip what happened
//! while it was away, registers its handlers, resumes unfinished renders, and keeps
//! syncing until the returned [`SurfaceHandle`] shuts it down (the sync loop and every
//! handler run on its tasks).

mod allow;
mod bot;
pub mod config;
mod content;
mod error;
mod key;
mod mention;
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
use chorus_core::chat::SurfaceHandle;
use mention::BotNames;
use sink::ThreadTails;
use std::path::Path;
use std::sync::Arc;

/// Connects the bot and starts serving. Fails (naming the homeserver and the user,
/// never the secret) when the login or the first sync does. Its
/// [`SurfaceHandle::shutdown`] stops the sync, waits for the handlers and stops the
/// renderers (their unfinished renders resume on the next start): call it before the
/// core shuts down.
pub async fn start(
    core: Core,
    config: &MatrixConfig,
    data_dir: &Path,
) -> Result<SurfaceHandle, MatrixError> {
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
    let sinks = Arc::new(MatrixSinkFactory::new(
        client.clone(),
        tails.clone(),
        config.limits(),
    ));
    let hub = core.render_hub(SURFACE, &config.command_prefix, sinks);
    let surface = SurfaceHandle::new(hub.clone());
    let bot = Arc::new(Bot {
        core,
        hub: hub.clone(),
        client: client.clone(),
        names: BotNames::new(own_id.as_str(), display_name.as_deref()),
        own_id,
        allow: Allowlist::from_config(config),
        prefix: config.command_prefix.clone(),
        tails,
        surface: surface.clone(),
    });
    bot.register();
    // Invites that arrived while the bot was away (their events went by in the first sync).
    for room in client.invited_rooms() {
        match room.invite_details().await {
            Ok(invite) => {
                let bot = bot.clone();
                surface.spawn(async move { bot.answer_invite(room, invite.inviter_id).await });
            }
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "matrix: cannot read a pending invite")
            }
        }
    }
    hub.resume_unfinished().await;
    surface.spawn(sync::sync_forever(client, first, surface.clone()));
    tracing::info!(user = %config.user_id, homeserver = %config.homeserver_url, "matrix: the bot is listening");
    Ok(surface)
}
