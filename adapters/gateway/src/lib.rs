//! The gateway surface: OpenAI's Chat Completions (`POST /v1/chat/completions`,
//! `GET /v1/models`) and Anthropic's Messages (`POST /v1/messages`) wire formats over
//! [`chorus_core::Core`], so SDKs, IDE assistants and agents use Chorus models and
//! aliases with the same accounts, balances, limits and fallbacks as every surface.
//!
//! Each request is a run of the API key's account (`Core::start_gateway_run`); the
//! reply is read from the run's journal like any reader's (`reply.rs`), so the
//! `x-chorus-run-id` header lets a client whose connection dropped read the rest from
//! `/api/runs/{id}/events`. Stateless: it translates, authenticates and formats, and
//! leaves every decision to core.

pub mod config;

mod anthropic;
mod auth;
mod error;
mod openai;
mod reply;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chorus_core::Core;
use config::GatewayConfig;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Response header naming the run that serves a request.
pub const RUN_ID_HEADER: &str = "x-chorus-run-id";

/// Everything a gateway handler needs.
#[derive(Clone)]
pub(crate) struct GatewayState {
    pub core: Core,
    pub config: Arc<GatewayConfig>,
    /// Cancelled when the server shuts down, ending open streams.
    pub shutdown: CancellationToken,
}

/// The gateway's routes, to merge beside the web surface's; empty when
/// `[gateway] enabled = false`.
pub fn router(core: Core, config: GatewayConfig, shutdown: CancellationToken) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let max_body = core.config().server.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(openai::chat::completions))
        .route("/v1/models", get(openai::models::list))
        .route("/v1/models/{*id}", get(openai::models::get))
        .route("/v1/messages", post(anthropic::messages::create))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(GatewayState {
            core,
            config: Arc::new(config),
            shutdown,
        })
}

#[cfg(test)]
mod tests {
    /// Every gateway route is documented in the web surface's openapi.json (the one
    /// document `GET /api/openapi.json` serves), with a wildcard as a path parameter.
    #[test]
    fn openapi_documents_every_gateway_route() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../web/openapi.json")).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        let source = include_str!("lib.rs");
        let router_fn = source.split("#[cfg(test)]").next().unwrap();
        let routed: Vec<String> = router_fn
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .map(|route| route.replace("{*", "{"))
            .collect();
        assert_eq!(routed.len(), 4, "{routed:?}");
        for route in &routed {
            assert!(paths.contains_key(route), "{route} is not in openapi.json");
        }
        let documented = paths.keys().filter(|p| p.starts_with("/v1/")).count();
        assert_eq!(
            documented,
            routed.len(),
            "a /v1 path is documented but not routed"
        );
    }
}
