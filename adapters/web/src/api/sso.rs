//! Single sign-on routes: the providers for the login page, the redirect to a
//! provider, its callback, and the account's identities (list, unlink).
//!
//! The flow's state travels in a short-lived `HttpOnly` cookie scoped to the SSO
//! routes: the callback only succeeds in the browser that started the login.

use crate::extract::{Authed, SESSION_COOKIE, WebSession, session_token};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chorus_core::SsoCallback;
use serde::Deserialize;
use serde_json::json;

/// Cookie holding the state of the login in progress.
const STATE_COOKIE: &str = "chorus_sso_state";
/// Seconds the state cookie lives (the server forgets the flow after ten minutes too).
const STATE_MAX_AGE: u64 = 600;

pub async fn providers(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "local_passwords": state.core.local_passwords_enabled(),
        "providers": state.core.sso_providers(),
    }))
}

fn secure(state: &AppState) -> &'static str {
    if state.core.config().auth.secure_cookies() {
        "; Secure"
    } else {
        ""
    }
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "header"))
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// Whether the request is a browser navigation (it accepts HTML).
fn wants_html(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// An error as a browser navigation should see it: the chat client, with the message
/// in `?sso_error=` (API clients get the JSON error).
fn to_browser(e: ApiError, html: bool) -> Response {
    if !html {
        return e.into_response();
    }
    let target = format!(
        "/?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sso_error", &e.message)
            .finish()
    );
    let mut response =
        (StatusCode::SEE_OTHER, [(header::CACHE_CONTROL, "no-store")]).into_response();
    if let Ok(location) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `GET /api/auth/sso/{provider}/start`: 302 to the provider. A logged-in browser
/// links the identity to its account instead of logging in.
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    parts: Parts,
) -> Response {
    let html = wants_html(&parts);
    begin(&state, &provider, &parts)
        .await
        .unwrap_or_else(|e| to_browser(e, html))
}

async fn begin(state: &AppState, provider: &str, parts: &Parts) -> Result<Response, ApiError> {
    let current = match session_token(parts) {
        Some(token) => {
            state
                .core
                .account_by_session(&token, crate::extract::user_agent(parts))
                .await?
        }
        None => None,
    };
    if current.is_some() {
        // A logged-in start links a new identity to the account: a state change the
        // cookie authorizes, so it must come from our own pages (a cross-site link
        // would otherwise start it in the victim's session).
        crate::guard::check(&parts.headers, state, true)?;
    }
    let started = state.core.sso_start(provider, current.as_ref()).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, header_value(&started.redirect_url)?);
    headers.insert(
        header::SET_COOKIE,
        header_value(&format!(
            "{STATE_COOKIE}={}; Path=/api/auth/sso; HttpOnly; SameSite=Lax; Max-Age={STATE_MAX_AGE}{}",
            started.state,
            secure(state)
        ))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::FOUND, headers).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /api/auth/sso/{provider}/callback`: checks state, exchanges the code, opens
/// a session (or links the identity) and sends the browser to the chat client. A
/// failure is the usual JSON error, except for a browser navigation (`Accept:
/// text/html`), which is sent to the chat client with the message in `?sso_error=`.
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
    parts: Parts,
) -> Response {
    let html = wants_html(&parts);
    finish(&state, &provider, query, &parts)
        .await
        .unwrap_or_else(|e| to_browser(e, html))
}

async fn finish(
    state: &AppState,
    provider: &str,
    query: CallbackQuery,
    parts: &Parts,
) -> Result<Response, ApiError> {
    let browser_state = cookie(parts, STATE_COOKIE);
    let login = state
        .core
        .sso_callback(
            provider,
            SsoCallback {
                code: query.code,
                state: query.state,
                error: query.error,
                error_description: query.error_description,
            },
            browser_state.as_deref(),
        )
        .await?;
    let mut response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        header_value(&format!(
            "{STATE_COOKIE}=; Path=/api/auth/sso; HttpOnly; SameSite=Lax; Max-Age=0"
        ))?,
    );
    if let Some(token) = login.session_token {
        let max_age = state.core.config().auth.session_ttl_hours * 3600;
        headers.append(
            header::SET_COOKIE,
            header_value(&format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
                secure(state)
            ))?,
        );
    }
    Ok(response)
}

/// `GET /api/me/identities`.
pub async fn identities(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    let identities = state.core.identities(&account).await?;
    Ok(Json(json!({ "identities": identities })))
}

/// `DELETE /api/me/identities/{id}`: 204, 404 (not this account's), 409 (last way in).
pub async fn unlink(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let plausible =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !plausible {
        return Err(ApiError::not_found("identity"));
    }
    state.core.unlink_identity(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
