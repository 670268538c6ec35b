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
            CoreError::Forbidden(e @ chorus_core::Forbidden::ModelNotAllowed { .. }) => {
                Self::new(StatusCode::FORBIDDEN, "model_not_allowed", e.to_string())
            }
            CoreError::Forbidden(e) => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            CoreError::Invalid(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            CoreError::Conflict(e) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            CoreError::Refused(refusal) => {
                let (status, code) = match refusal {
                    chorus_core::quota::Refusal::TooManyRuns { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "too_many_runs")
                    }
                    _ => (StatusCode::PAYMENT_REQUIRED, "insufficient_balance"),
                };
                Self::new(status, code, refusal.to_string())
            }
            CoreError::RateLimited(msg) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg)
            }
            CoreError::InvalidLinkCode(msg) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_link_code", msg)
            }
            CoreError::Sso(e) => sso_error(e),
            CoreError::Unavailable(msg) => {
                Self::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", msg)
            }
            CoreError::Auth(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            other @ (CoreError::Store(_) | CoreError::Journal(_) | CoreError::Limiter(_)) => {
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

/// Status and code of each single sign-on failure; the message is the error's own.
fn sso_error(e: chorus_core::sso::SsoError) -> ApiError {
    use chorus_core::sso::SsoError as E;
    let (status, code) = match &e {
        E::UnknownProvider(_) => (StatusCode::NOT_FOUND, "not_found"),
        E::StateMismatch => (StatusCode::BAD_REQUEST, "sso_state_mismatch"),
        E::FlowExpired => (StatusCode::BAD_REQUEST, "sso_flow_expired"),
        E::Denied(_) => (StatusCode::UNAUTHORIZED, "sso_denied"),
        E::Discovery(_) => (StatusCode::BAD_GATEWAY, "sso_provider_unavailable"),
        E::TokenExchange(_) => (StatusCode::UNAUTHORIZED, "sso_token_exchange_failed"),
        E::IdToken(_) => (StatusCode::UNAUTHORIZED, "sso_invalid_id_token"),
        E::UserInfo(_) => (StatusCode::BAD_GATEWAY, "sso_user_unavailable"),
        E::EmailNotAllowed(_) => (StatusCode::FORBIDDEN, "sso_email_not_allowed"),
        E::IdentityTaken(_) => (StatusCode::CONFLICT, "identity_linked_elsewhere"),
        E::LocalPasswordsDisabled => (StatusCode::FORBIDDEN, "local_login_disabled"),
        E::LastWayIn => (StatusCode::CONFLICT, "last_way_in"),
        E::LocalIdentity => (StatusCode::BAD_REQUEST, "invalid_request"),
        E::Internal(_) => {
            tracing::error!(error = %e, "SSO internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    ApiError::new(status, code, e.to_string())
}
