//! A [`GatewayError`] in Anthropic's shape, `{"type": "error", "error": {"type",
//! "message"}}`, with the status Anthropic uses, so the SDK raises its own exception
//! types. A spent balance is Anthropic's `billing_error` (402): unlike a rate limit,
//! waiting does not help, so clients must not retry it.

use crate::error::{ErrorKind, GatewayError};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered in Anthropic's format.
#[derive(Debug)]
pub struct AnthropicError(pub GatewayError);

impl<E: Into<GatewayError>> From<E> for AnthropicError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

fn shape(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        ErrorKind::Authentication => (StatusCode::UNAUTHORIZED, "authentication_error"),
        ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_error"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
        ErrorKind::InsufficientQuota => (StatusCode::PAYMENT_REQUIRED, "billing_error"),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, "api_error"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    }
}

/// The error object (what a stream sends as its `error` event too).
pub fn error_body(e: &GatewayError) -> Value {
    let (_, kind) = shape(e.kind);
    json!({"type": "error", "error": {"type": kind, "message": e.message}})
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let (status, _) = shape(self.0.kind);
        let mut response = (status, Json(error_body(&self.0))).into_response();
        if let Some(wait) = self.0.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        response
    }
}
