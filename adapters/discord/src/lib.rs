//! The Discord surface of Chorus: a serenity bot on the gateway (no public URL
//! needed) that answers in DMs and, when mentioned in a channel, in a thread of its
//! own; takes slash commands and the buttons on its replies; and streams each reply by
//! editing one message through core's renderer.
//!
//! [`start`] checks the API and the token, connects to the gateway, registers the
//! slash commands once READY, resumes unfinished renders, and returns the
//! [`SurfaceHandle`] whose shutdown stops the gateway and every handler. Modules:
//! `config` (the `[discord]` section), `connection` (the gateway client and its
//! events), `addressing` (when a message is for the bot), `allow` (the allowlists),
//! `commands` (slash command definitions and parsing), `interactions` (commands,
//! buttons, menus), `controls` (the buttons), `sink` and `rest` (posting and editing).

mod addressing;
mod allow;
mod bot;
mod commands;
pub mod config;
mod connection;
mod controls;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod interactions;
mod rest;
mod sink;

pub use allow::Allowlist;
pub use bot::SURFACE;
pub use error::DiscordError;

use crate::config::DiscordConfig;
use chorus_core::Core;
use chorus_core::chat::SurfaceHandle;
use std::path::Path;

/// Connects the bot and starts serving. Fails with a clear error (naming the API,
/// never the token) when the API cannot be reached, refuses the token, or the
/// gateway is not ready within `connect_timeout_secs`. Its
/// [`SurfaceHandle::shutdown`] closes the gateway, waits for the handlers and stops
/// the renderers (their unfinished renders resume on the next start).
pub async fn start(
    core: Core,
    config: &DiscordConfig,
    _data_dir: &Path,
) -> Result<SurfaceHandle, DiscordError> {
    connection::start(core, config).await
}
