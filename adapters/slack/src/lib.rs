//! The Slack surface of Chorus: a Slack app that answers app mentions in channel
//! threads (each thread one conversation), DMs and assistant threads, streams its
//! replies by editing them (paced for the workspace's `chat.update` tier), carries
//! Stop, Continue and Regenerate buttons, and takes the `/chorus` slash command.
//!
//! Slack reaches it over Socket Mode (the default: [`socket`]) or the Events API on
//! Chorus's own listener ([`EventsEndpoint`]). [`start`] checks the bot token
//! (`auth.test`), resumes unfinished renders and connects, all bounded by
//! `connect_timeout_secs`, and returns the [`SurfaceHandle`] that stops it.

mod allow;
mod api;
mod bot;
pub mod config;
mod error;
mod events;
mod forms;
#[cfg(test)]
mod fuzz_tests;
mod key;
mod sink;
mod socket;
mod threads;

pub use allow::Allowlist;
pub use bot::{PREFIX, SURFACE, clean_text};
pub use error::SlackError;
pub use events::EventsEndpoint;
pub use key::Place;

use crate::api::{Client, SlackApi};
use crate::bot::Bot;
use crate::config::{Mode, SlackConfig};
use crate::sink::SlackSinkFactory;
use crate::threads::Threads;
use chorus_core::Core;
use chorus_core::chat::SurfaceHandle;
use slack_morphism::hyper_tokio::SlackClientHyperConnector;
use std::sync::Arc;
use std::time::Duration;

/// Connects the app and starts serving. Fails, naming the API URL and never a
/// token, when Slack cannot be reached or refuses a token within
/// `connect_timeout_secs`. In `events` mode the bot is installed in `endpoint`
/// (whose router the binary mounts); in `socket` mode the socket is opened.
/// [`SurfaceHandle::shutdown`] stops receiving, waits for the handlers and stops
/// the renderers (their unfinished renders resume on the next start).
pub async fn start(
    core: Core,
    config: &SlackConfig,
    endpoint: &EventsEndpoint,
) -> Result<SurfaceHandle, SlackError> {
    // Socket Mode's TLS (tokio-tungstenite) builds its rustls config from the process
    // default provider, which must be chosen when more than one is compiled in.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Arc::new(client(config)?);
    let timeout = Duration::from_secs(config.connect_timeout_secs);
    let api = SlackApi::new(
        client.clone(),
        config.bot_token.expose(),
        Duration::from_millis(config.update_interval_ms),
    );
    let auth_failed = |message: String| SlackError::Auth {
        api_url: config.api_base(),
        message,
    };
    let (bot_user, team) = tokio::time::timeout(timeout, api.auth_test())
        .await
        .map_err(|_| auth_failed(format!("no answer within {} s", timeout.as_secs())))?
        .map_err(|e| auth_failed(e.to_string()))?;
    let threads = Threads::new(core.clone(), SURFACE);
    let sinks = Arc::new(SlackSinkFactory::new(
        api.clone(),
        threads.clone(),
        config.limits(),
        config.native_streaming,
    ));
    let hub = core.render_hub(SURFACE, PREFIX, sinks);
    let surface = SurfaceHandle::new(hub.clone());
    let bot = Arc::new(Bot::new(
        core,
        hub.clone(),
        api,
        bot_user.clone(),
        Allowlist::from_config(config),
        threads,
        surface.clone(),
    ));
    match config.mode {
        Mode::Socket => {
            let app_token = config
                .app_token
                .as_ref()
                .map(|t| t.expose().to_string())
                .unwrap_or_default();
            let socket = socket::Socket::connect(
                client,
                bot.clone(),
                &app_token,
                &config.api_base(),
                timeout,
            )
            .await?;
            let stopping = surface.stopping();
            surface.spawn(async move {
                stopping.cancelled().await;
                socket.shutdown().await;
            });
        }
        Mode::Events => {
            endpoint.install(Some(bot.clone()));
            let stopping = surface.stopping();
            let endpoint = endpoint.clone();
            surface.spawn(async move {
                stopping.cancelled().await;
                endpoint.install(None);
            });
        }
    }
    hub.resume_unfinished().await;
    tracing::info!(bot_user = %bot_user, team = %team, mode = ?config.mode, "slack: the app is listening");
    Ok(surface)
}

/// slack-morphism's client on an HTTPS connector (rustls, the system's roots); for a
/// loopback `http://` API URL (tests' fake Slack) the connector also speaks plain
/// HTTP, which the config allows for loopback hosts only.
fn client(config: &SlackConfig) -> Result<Client, SlackError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| SlackError::Client(e.to_string()))?;
    let connector = if config.api_base().starts_with("http://") {
        builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build()
    } else {
        builder.https_only().enable_http1().enable_http2().build()
    };
    let connector =
        SlackClientHyperConnector::from(connector).with_slack_api_url(&config.api_base());
    Ok(slack_morphism::SlackClient::new(connector))
}
