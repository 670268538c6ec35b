//! The one place where errors become HTTP responses: `{"error": {"code", "message"}}`
//! with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_core::CoreError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in or send an API key",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotFound(what) => Self::not_found(what),
            CoreError::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong name or password",
            ),
            CoreError::Forbidden(msg) => Self::new(StatusCode::FORBIDDEN, "forbidden", msg),
            CoreError::Invalid(msg) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", msg),
            CoreError::Conflict(msg) => Self::new(StatusCode::CONFLICT, "conflict", msg),
            CoreError::Unavailable(msg) => {
                Self::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", msg)
            }
            CoreError::Auth(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
