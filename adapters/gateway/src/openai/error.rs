//! A [`GatewayError`] in OpenAI's shape: `{"error": {"message", "type", "param",
//! "code"}}` with the status OpenAI uses, so the SDKs raise their own exception types
//! (`AuthenticationError`, `NotFoundError`, `RateLimitError`...).

use crate::error::{ErrorKind, GatewayError};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered in OpenAI's format.
#[derive(Debug)]
pub struct OpenAiError(pub GatewayError);

impl<E: Into<GatewayError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// Status, `type` and `code` of each kind, as OpenAI's API answers them.
fn shape(kind: ErrorKind) -> (StatusCode, &'static str, Option<&'static str>) {
    match kind {
        ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
        ErrorKind::Authentication => (
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        ErrorKind::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("insufficient_permissions"),
        ),
        ErrorKind::NotFound => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        ErrorKind::InsufficientQuota => (
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        ErrorKind::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
        ),
        ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, "api_error", Some("upstream_error")),
        ErrorKind::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            Some("internal_error"),
        ),
    }
}

/// The error object (what a stream sends as its last `data:` too).
pub fn error_body(e: &GatewayError) -> Value {
    let (_, kind, code) = shape(e.kind);
    json!({"error": {"message": e.message, "type": kind, "param": e.param, "code": code}})
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, _, _) = shape(self.0.kind);
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
