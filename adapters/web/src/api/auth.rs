//! Login, logout and the current account.

use crate::extract::{ApiJson, Authed, SESSION_COOKIE, WebSession, session_token};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
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
    let secure = if auth.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
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

#[derive(Deserialize)]
pub struct PasswordChange {
    /// The password now (ignored for an account that has none yet, e.g. SSO only).
    #[serde(default)]
    current_password: String,
    new_password: String,
}

/// `POST /api/me/password`: sets a new password; every other session of the account
/// ends. A wrong current password counts as a failed login.
pub async fn change_password(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    parts: Parts,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = crate::extract::client_address(&parts, &state);
    let keep = session_token(&parts);
    let ended = state
        .core
        .change_password(
            &account,
            &req.current_password,
            &req.new_password,
            &client,
            keep.as_deref(),
        )
        .await?;
    Ok(Json(json!({"sessions_ended": ended})))
}

/// `DELETE /api/me/sessions`: signs the account out everywhere, this browser included.
pub async fn revoke_sessions(
    State(state): State<AppState>,
    WebSession(account): WebSession,
) -> Result<Response, ApiError> {
    let ended = state.core.revoke_sessions(&account).await?;
    let mut response = Json(json!({"sessions_ended": ended})).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("chorus_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(response)
}

/// `GET /api/me/sessions`: the account's signed-in browsers, this one marked
/// `current`. Never a token.
pub async fn list_sessions(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    parts: Parts,
) -> Result<Json<serde_json::Value>, ApiError> {
    let current = session_token(&parts);
    let sessions = state.core.sessions(&account, current.as_deref()).await?;
    Ok(Json(json!({ "sessions": sessions })))
}

/// `DELETE /api/me/sessions/{id}`: signs one browser out. Another account's session
/// is 404.
pub async fn revoke_session(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.revoke_session(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
