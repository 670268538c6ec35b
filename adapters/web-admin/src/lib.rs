//! The admin console: server-rendered pages at `/admin` (`pages/`) and the JSON API
//! they mirror under `/api/admin` (`api.rs`), for accounts with the admin role, in the
//! web chat's session. Stateless over [`chorus_core::Core`]: every handler takes the
//! admin capability from `access.rs` and calls one facade method; no business logic
//! here.
//!
//! Who may enter is decided once: without a session (or with an expired one) 401,
//! with a session or key of an account that is not an admin 403 (`forbidden`, core's
//! `Forbidden::NotAdmin`), on pages and API alike; a suspended admin gets core's 403
//! `AccountSuspended`. Every form carries a CSRF token derived from the session
//! (`csrf.rs`), and every state change checks it and the Origin.

mod access;
mod api;
mod csrf;
mod headers;
mod pages;
mod query;
mod refusal;

use axum::Router;
use chorus_web::AppState;
use std::sync::Arc;

/// The effective configuration with secrets masked, as the binary dumps it (core's
/// sections and each surface's), shown on the Configuration page.
#[derive(Clone)]
pub struct ConfigDump(pub Arc<str>);

/// The console's routes, to mount inside the web surface's router
/// (`chorus_web::router_with`).
pub fn routes(config: ConfigDump) -> Router<AppState> {
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .layer(axum::Extension(config))
}
