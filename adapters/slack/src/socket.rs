//! Socket Mode: one WebSocket the app opens with its app-level token. slack-morphism
//! acknowledges each envelope once its callback returns (ours only hand the event to
//! the bot's tasks), reconnects on `disconnect` envelopes and dropped sockets, and
//! pings the socket; this module wires the callbacks to the [`Bot`] and waits,
//! bounded, for the first `hello`.

use crate::api::Client;
use crate::bot::Bot;
use crate::error::SlackError;
use chorus_core::chat::SurfaceState;
use slack_morphism::hyper_tokio::SlackClientHyperHttpsConnector;
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Seconds between attempts to open a socket that could not be opened.
const RECONNECT_SECS: u64 = 3;

/// What the callbacks reach through slack-morphism's user state.
struct State {
    bot: Arc<Bot>,
    /// Counts `hello`s: the first one says the socket is up.
    hellos: watch::Sender<u64>,
}

type Connector = SlackClientHyperHttpsConnector;

async fn state(states: &SlackClientEventsUserState) -> Option<Arc<State>> {
    states.read().await.get_user_state::<Arc<State>>().cloned()
}

/// Slack's `hello` (its type is not exported: the callback is a closure): the socket
/// is up.
async fn on_hello(states: SlackClientEventsUserState) {
    if let Some(state) = state(&states).await {
        tracing::info!("slack: Socket Mode connected");
        state.hellos.send_modify(|n| *n += 1);
        state.bot.surface.report(SurfaceState::Connected);
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(state) = state(&states).await {
        state.bot.on_push(event);
    }
    Ok(())
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(state) = state(&states).await {
        state.bot.on_interaction(event);
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    if let Some(state) = state(&states).await {
        state.bot.on_command(event);
    }
    // The answer comes as an ephemeral message; the acknowledgement shows nothing.
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

/// Envelopes that do not parse are logged and acknowledged (they never parse better).
/// A socket error (the connection is then opened again) marks the surface down
/// until the next `hello`.
fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> http::StatusCode {
    tracing::warn!(error = %err, "slack: Socket Mode error");
    let socket_lost = err
        .downcast_ref::<slack_morphism::errors::SlackClientError>()
        .is_some_and(|e| {
            matches!(
                e,
                slack_morphism::errors::SlackClientError::SocketModeProtocolError(_)
            )
        });
    if socket_lost
        && let Some(storage) = states.try_read().ok()
        && let Some(state) = storage.get_user_state::<Arc<State>>()
    {
        state.bot.surface.report(SurfaceState::Down {
            error: format!("Socket Mode connection lost: {err}"),
        });
    }
    http::StatusCode::OK
}

/// The running Socket Mode listener; dropping it stops the callbacks.
pub struct Socket {
    listener: SlackClientSocketModeListener<Connector>,
}

impl Socket {
    /// Opens the socket for `app_token` and waits up to `timeout` for Slack's first
    /// `hello`.
    pub async fn connect(
        client: Arc<Client>,
        bot: Arc<Bot>,
        app_token: &str,
        api_url: &str,
        timeout: Duration,
    ) -> Result<Self, SlackError> {
        let (hellos, mut seen) = watch::channel(0u64);
        let state = Arc::new(State { bot, hellos });
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(state),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_hello_events(|_hello, _client, states| on_hello(states))
            .with_push_events(on_push)
            .with_interaction_events(on_interaction)
            .with_command_events(on_command);
        // One connection: Slack delivers each envelope on one socket anyway, and one
        // is what a test's fake checks.
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_reconnect_timeout_in_seconds(RECONNECT_SECS);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let token = SlackApiToken::new(app_token.to_string().into());
        listener
            .listen_for(&token)
            .await
            .map_err(|e| SlackError::SocketToken(e.to_string()))?;
        listener.start().await;
        let hello = async { seen.wait_for(|n| *n > 0).await.is_ok() };
        let connected = tokio::time::timeout(timeout, hello).await.unwrap_or(false);
        if !connected {
            listener.shutdown().await;
            return Err(SlackError::SocketMode {
                api_url: api_url.to_string(),
                secs: timeout.as_secs(),
            });
        }
        Ok(Self { listener })
    }

    /// Closes the socket; nothing is received after this.
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}
