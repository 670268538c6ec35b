//! The web surface: the JSON API, server-sent event streams of runs, and the built-in
//! chat client. Stateless over [`chorus_core::Core`]: it parses, authenticates and
//! formats, and leaves every decision to core.

mod api;
mod assets;
mod error;
mod extract;
mod guard;
mod sse;

pub use error::ApiError;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use chorus_core::Core;
use tokio_util::sync::CancellationToken;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    /// Cancelled when the server shuts down, ending open event streams so graceful
    /// shutdown does not wait on them forever (clients reconnect elsewhere).
    pub shutdown: CancellationToken,
    /// Each account's open event streams on this instance (capped).
    streams: guard::StreamSlots,
}

/// The whole HTTP application: API, run streams, chat client, health checks.
pub fn router(core: Core, shutdown: CancellationToken) -> Router {
    let max_body = core.config().server.max_body_bytes;
    let state = AppState {
        core,
        shutdown,
        streams: guard::StreamSlots::default(),
    };
    Router::new()
        .merge(api::routes())
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(state.clone(), guard::same_origin))
        .layer(from_fn_with_state(state.clone(), guard::timeout))
        .with_state(state)
}
