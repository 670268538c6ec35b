//! JSON API routes under `/api`, plus health checks.

mod auth;
mod conversations;
mod runs;

use crate::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/models", get(models))
        .route(
            "/api/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route("/api/conversations/{id}", get(conversations::get))
        .route(
            "/api/conversations/{id}/messages",
            post(conversations::send),
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

async fn models(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "models": state.core.models(),
        "default_model": state.core.default_model(),
    }))
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

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.core.ready().await {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable"})),
        )
    }
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::not_found("route")
}
