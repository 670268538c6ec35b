//! Why the Slack surface could not start.

/// A startup failure of the Slack surface. Messages name the API URL and what
/// failed, never a token.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("slack: cannot set up the HTTPS client: {0}")]
    Client(String),
    #[error("slack: {api_url} cannot be reached or refused the bot token (auth.test): {message}")]
    Auth { api_url: String, message: String },
    #[error(
        "slack: Socket Mode did not connect within {secs} s (apps.connections.open at {api_url}, then the WebSocket); check slack.app_token"
    )]
    SocketMode { api_url: String, secs: u64 },
    #[error("slack: Socket Mode refused the app token: {0}")]
    SocketToken(String),
}
