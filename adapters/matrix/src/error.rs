//! Why the Matrix surface could not start.

use std::path::PathBuf;

/// A startup failure of the Matrix surface. Messages name the homeserver, the user
/// and the file involved, never a password or token.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("matrix: cannot use the store directory {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("matrix: the saved session {path} is unreadable: {message}")]
    Session { path: PathBuf, message: String },
    #[error("matrix: login to {homeserver} as {user} failed: {message}")]
    Login {
        homeserver: String,
        user: String,
        message: String,
    },
    #[error("matrix: cannot set up the client for {homeserver}: {message}")]
    Client { homeserver: String, message: String },
    #[error("matrix: first sync with {homeserver} failed: {message}")]
    Sync { homeserver: String, message: String },
}
