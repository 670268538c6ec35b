//! JSON API routes under `/api`, plus health checks.

mod account;
mod auth;
mod conversations;
mod files;
mod runs;
mod sso;
mod tools;

use crate::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/me/password", post(auth::change_password))
        .route(
            "/api/me/sessions",
            get(auth::list_sessions).delete(auth::revoke_sessions),
        )
        .route("/api/me/sessions/{id}", delete(auth::revoke_session))
        .route("/api/me/usage", get(account::usage))
        .route(
            "/api/keys",
            get(account::list_keys).post(account::create_key),
        )
        .route("/api/keys/{id}", delete(account::revoke_key))
        .route("/api/link-codes", post(account::issue_link_code))
        .route("/api/link-codes/redeem", post(account::redeem_link_code))
        .route("/api/admin/grants", post(account::grant))
        .route("/api/auth/providers", get(sso::providers))
        .route("/api/auth/sso/{provider}/start", get(sso::start))
        .route("/api/auth/sso/{provider}/callback", get(sso::callback))
        .route("/api/me/identities", get(sso::identities))
        .route("/api/me/identities/{id}", delete(sso::unlink))
        .route("/api/models", get(models))
        .route("/api/providers", get(providers))
        .route(
            "/api/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/api/conversations/{id}",
            get(conversations::get)
                .patch(conversations::rename)
                .delete(conversations::delete),
        )
        .route(
            "/api/conversations/{id}/messages",
            post(conversations::send),
        )
        .route("/api/conversations/{id}/files", get(files::list))
        .route(
            "/api/conversations/{id}/files/{*path}",
            get(files::download),
        )
        .route("/api/tools", get(tools::list))
        .route("/api/mcp/servers", get(tools::servers))
        .route("/api/mcp/resources", get(tools::resources))
        .route("/api/mcp/resources/read", post(tools::read_resource))
        .route("/api/mcp/prompts", get(tools::prompts))
        .route("/api/mcp/prompts/get", post(tools::get_prompt))
        .route(
            "/api/conversations/{id}/tools",
            get(tools::conversation_tools).put(tools::set_conversation_tools),
        )
        .route("/api/runs/{id}", get(runs::get))
        .route("/api/runs/{id}/events", get(runs::events))
        .route("/api/runs/{id}/stop", post(runs::stop))
        .route("/api/runs/{id}/continue", post(runs::continue_run))
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
}

/// The models the caller may use (its role's, by the access policy) and its default;
/// without credentials, those of the role new accounts get. Credentials that are
/// sent must be valid.
async fn models(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    use axum::extract::FromRequestParts;
    let (mut parts, _) = request.into_parts();
    let signed_in = parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
        || crate::extract::session_token(&parts).is_some();
    let (models, default_model) = if signed_in {
        let crate::extract::Authed(account) =
            crate::extract::Authed::from_request_parts(&mut parts, &state).await?;
        (
            state.core.models_for(&account).await?,
            state.core.default_model_for(&account).await?,
        )
    } else {
        let role = state.core.default_role();
        let models = state.core.models_for_role(role).await?;
        let default = models
            .iter()
            .find(|m| m.id == state.core.default_model())
            .or(models.first())
            .map_or_else(|| state.core.default_model().to_string(), |m| m.id.clone());
        (models, default)
    };
    Ok(Json(json!({
        "models": models,
        "default_model": default_model,
    })))
}

async fn providers(
    State(state): State<AppState>,
    crate::extract::Authed(account): crate::extract::Authed,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let providers = state.core.provider_health(&state.core.admin(&account)?);
    Ok(Json(json!({ "providers": providers })))
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// 503 when storage or the journal does not answer (nothing can be served); a chat
/// surface that is down makes the instance `degraded`, still 200, so a load balancer
/// keeps sending it web and API traffic. `surfaces` says how each one stands.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let ready = state.core.ready().await;
    let surfaces = state.core.surface_states();
    let all_connected = surfaces
        .iter()
        .all(|s| s.state == chorus_core::SurfaceState::Connected);
    let (code, status) = match (ready, all_connected) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    (code, Json(json!({"status": status, "surfaces": surfaces})))
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::not_found("route")
}

#[cfg(test)]
mod tests {
    /// The OpenAPI form of a router path: a wildcard `{*name}` (the rest of the URL)
    /// is the path parameter `{name}`.
    fn openapi_path(route: &str) -> String {
        route.replace("{*", "{")
    }

    #[test]
    fn wildcards_are_path_parameters() {
        assert_eq!(
            openapi_path("/api/conversations/{id}/files/{*path}"),
            "/api/conversations/{id}/files/{path}"
        );
        assert_eq!(openapi_path("/api/runs/{id}"), "/api/runs/{id}");
    }

    /// Every route of the API is documented in openapi.json, and nothing else is.
    #[test]
    fn openapi_documents_every_route() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let documented: std::collections::BTreeSet<String> =
            spec["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("mod.rs");
        let routes_fn = source.split("#[cfg(test)]").next().unwrap();
        let routed: std::collections::BTreeSet<String> = routes_fn
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .map(openapi_path)
            .collect();
        assert!(!routed.is_empty());
        // The admin console's routes (`chorus-admin`) and the gateway's `/v1` routes
        // (`chorus-gateway`) are documented here too; each crate checks its own.
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(missing.is_empty(), "undocumented routes: {missing:?}");
        let extra: Vec<_> = documented
            .difference(&routed)
            .filter(|p| !p.starts_with("/api/admin/") && !p.starts_with("/v1/"))
            .collect();
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    }
}
