//! Login, logout and the current account.

use crate::extract::{ApiJson, Authed, SESSION_COOKIE, session_token};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header::SET_COOKIE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct LoginRequest {
    name: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let client = crate::extract::client_address(&parts, &state);
    let (account, token) = state.core.login(&req.name, &req.password, &client).await?;
    let auth = &state.core.config().auth;
    let max_age = auth.session_ttl_hours * 3600;
    let secure = if auth.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    let mut response = Json(json!({"account": account})).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "cookie"))?,
    );
    Ok(response)
}

pub async fn logout(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&parts) {
        state.core.logout(&token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("chorus_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(response)
}

pub async fn me(Authed(account): Authed) -> Json<serde_json::Value> {
    Json(json!(account))
}
