//! Extractors: the authenticated account, JSON bodies and path ids, each rejecting
//! bad input with our error shape.

use crate::{ApiError, AppState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use chorus_core::ApiKeyScope;
use chorus_core::telemetry::timing;
use chorus_model::account::Account;
use serde::de::DeserializeOwned;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "chorus_session";

/// The account making the request, from `Authorization: Bearer` or the session cookie.
pub struct Authed(pub Account);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let key = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthenticated)?;
            let keyed = state.core.api_key_account(key).await?;
            timing::mark("auth");
            return match keyed {
                Some(keyed) => {
                    let reads = parts.method == Method::GET || parts.method == Method::HEAD;
                    if !reads && !keyed.scopes.contains(&ApiKeyScope::Chat) {
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "insufficient_scope",
                            "this API key has the `read` scope only; this request needs `chat`",
                        ));
                    }
                    Ok(Authed(keyed.account))
                }
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "API key is invalid or revoked",
                )),
            };
        }
        let token = session_token(parts).ok_or_else(ApiError::unauthenticated)?;
        let account = state
            .core
            .account_by_session(&token, user_agent(parts))
            .await?;
        timing::mark("auth");
        match account {
            Some(account) => Ok(Authed(account)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "session expired; log in again",
            )),
        }
    }
}

/// The account of a browser session. API keys are refused: managing keys and linking
/// accounts is for the person, not for a script holding a key.
pub struct WebSession(pub Account);

impl FromRequestParts<AppState> for WebSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "API keys cannot manage API keys, sign-in methods or linked accounts; log in on the web",
            ));
        }
        Authed::from_request_parts(parts, state)
            .await
            .map(|Authed(account)| WebSession(account))
    }
}

/// The address of the client, for per-client limits: the socket's peer, or the
/// address a trusted reverse proxy forwarded (`server.trusted_proxies`, see
/// [`chorus_core::config::ServerConfig::client_ip`]); "unknown" when the server was
/// not started with connection info.
pub fn client_address(parts: &Parts, state: &AppState) -> String {
    let Some(peer) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return "unknown".to_string();
    };
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    state
        .core
        .config()
        .server
        .client_ip(peer, forwarded)
        .to_canonical()
        .to_string()
}

/// The browser's `User-Agent`, for its owner's list of sessions.
pub fn user_agent(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The session token from the request's cookies.
pub fn session_token(parts: &Parts) -> Option<String> {
    session_cookie(&parts.headers)
}

/// The session token from these headers' cookies.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// A JSON body whose rejections (malformed, wrong type, too large) use our error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "malformed_json",
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

/// Parses a path id, answering 404 for anything that is not one (it cannot exist).
pub fn parse_id<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError::not_found(what))
}
