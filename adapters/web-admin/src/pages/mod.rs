//! The console's pages, one module per area, each a handler that takes the admin
//! capability, calls the facade and renders a maud template; actions are plain HTML
//! forms (POST, CSRF token) answered with a redirect to the page they act on, so
//! everything works without JavaScript. `layout.rs` is the shell and navigation.

mod access;
mod account;
mod accounts;
mod audit;
mod chart;
mod config;
mod format;
mod groups;
mod layout;
mod overview;
mod providers;
mod runs;
mod tools;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chorus_web::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview::page))
        .route("/admin/admin.css", get(stylesheet))
        .route("/admin/accounts", get(accounts::page))
        .route("/admin/accounts/{id}", get(account::page))
        .route("/admin/accounts/{id}/suspend", post(account::suspend))
        .route("/admin/accounts/{id}/reactivate", post(account::reactivate))
        .route("/admin/accounts/{id}/role", post(account::role))
        .route("/admin/accounts/{id}/refill", post(account::refill))
        .route("/admin/accounts/{id}/credits", post(account::grant))
        .route(
            "/admin/accounts/{id}/revoke-access",
            post(account::revoke_access),
        )
        .route("/admin/accounts/{id}/unlink", post(account::unlink))
        .route("/admin/accounts/{id}/delete", post(account::delete))
        .route("/admin/access", get(access::page))
        .route("/admin/access/{role}/{resource}", post(access::set))
        .route("/admin/access/groups", post(groups::create))
        .route("/admin/access/groups/{group}", get(groups::page))
        .route(
            "/admin/access/groups/{group}/{resource}",
            post(groups::set_list),
        )
        .route("/admin/access/groups/{group}/members", post(groups::member))
        .route("/admin/access/groups/{group}/delete", post(groups::delete))
        .route("/admin/accounts/{id}/groups", post(groups::account_member))
        .route("/admin/runs", get(runs::page))
        .route("/admin/runs/{id}", get(runs::run_page))
        .route("/admin/runs/{id}/stop", post(runs::stop))
        .route("/admin/providers", get(providers::page))
        .route("/admin/tools", get(tools::page))
        .route(
            "/admin/tools/mcp/{server}/restart",
            post(tools::restart_mcp_server),
        )
        .route(
            "/admin/tools/sandbox/{execution}/kill",
            post(tools::kill_execution),
        )
        .route("/admin/audit", get(audit::page))
        .route("/admin/audit.csv", get(audit::csv))
        .route("/admin/config", get(config::page))
}

/// After an action: back to the page it acted on (Post/Redirect/Get), with a notice.
pub fn back_to(path: &str, notice: &str) -> Redirect {
    let notice: String = url_encode(notice);
    Redirect::to(&format!("{path}?notice={notice}"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("admin.css"),
    )
}
