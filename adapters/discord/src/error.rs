//! Why the Discord surface could not start.

/// A startup failure of the Discord surface. Messages name the API and what failed,
/// never the token.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord: cannot reach the API at {api}: {message}")]
    Unreachable { api: String, message: String },
    #[error("discord: the API at {api} refused the bot token: {message}")]
    Token { api: String, message: String },
    #[error("discord: cannot set up the client: {0}")]
    Client(String),
    #[error(
        "discord: the gateway did not become ready within {secs} s ({detail}); if the log shows close code 4014, turn on the message-content intent in the Developer Portal or set discord.message_content_intent = false"
    )]
    Gateway { secs: u64, detail: String },
}
