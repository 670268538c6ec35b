//! The web surface: the JSON API, server-sent event streams of runs, and the built-in
//! chat client. Stateless over [`chorus_core::Core`]: it parses, authenticates and
//! formats, and leaves every decision to core.

mod api;
mod assets;
mod error;
mod extract;
mod guard;
mod serve;
mod sse;

pub use error::ApiError;
// Shared with the admin console (`chorus-admin`), which is mounted inside this router.
pub use extract::{ApiJson, Authed, SESSION_COOKIE, session_cookie, user_agent};
pub use guard::check as check_same_origin;
pub use serve::{Shutdown, serve};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use chorus_core::Core;
use chorus_core::telemetry::timing;
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
    router_with(core, shutdown, Router::new())
}

/// [`router`] with `extra` routes (the admin console) mounted inside it, behind the
/// same body limit, Origin check and request timeout.
pub fn router_with(core: Core, shutdown: CancellationToken, extra: Router<AppState>) -> Router {
    let max_body = core.config().server.max_body_bytes;
    let state = AppState {
        core,
        shutdown,
        streams: guard::StreamSlots::default(),
    };
    Router::new()
        .merge(extra)
        .merge(api::routes())
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(state.clone(), guard::same_origin))
        .layer(from_fn_with_state(state.clone(), guard::timeout))
        .layer(from_fn(timed))
        .with_state(state)
}

/// Gives each request a timeline of its own while `[telemetry] timing` is on (see
/// `chorus_core::telemetry::timing`); a plain pass-through otherwise.
async fn timed(request: Request, next: Next) -> Response {
    timing::timed("api", next.run(request)).await
}
