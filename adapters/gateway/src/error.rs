//! What can go wrong with a gateway request, independent of wire format: each API
//! (`openai/error.rs`, `anthropic/error.rs`) renders a [`GatewayError`] in its own
//! error shape and status. Core's errors are mapped here, by variant, once.

use chorus_core::CoreError;
use chorus_core::quota::Refusal;
use std::time::Duration;

/// The kind of a failure, which decides status and error type in each API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed body, a parameter out of range, or one the target cannot honour.
    InvalidRequest,
    /// No key, or a key that is invalid or revoked.
    Authentication,
    /// A valid key that may not do this (a `read`-scoped key).
    PermissionDenied,
    /// An unknown model.
    NotFound,
    /// The account's balance is spent (or does not cover the prompt).
    InsufficientQuota,
    /// Too many requests or replies at once; try again after `retry_after`.
    RateLimited,
    /// The model's provider failed.
    Upstream,
    /// Chorus itself failed (database, journal).
    Internal,
}

/// A failed gateway request, in Chorus's words; the API renders it.
#[derive(Debug)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
    /// How long to wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// A request field Chorus refuses, with the reason.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::new(ErrorKind::InvalidRequest, message)
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorKind::Authentication,
            "missing API key: send a Chorus API key as `Authorization: Bearer KEY` or `x-api-key: KEY`",
        )
    }

    /// Core's error, with the wait a limit imposes (`window` for the message rate
    /// limit, `refill` for a spent balance that refills).
    pub fn from_core(e: CoreError, window: Duration, refill: Option<Duration>) -> Self {
        match e {
            CoreError::NotFound(what) => {
                Self::new(ErrorKind::NotFound, format!("{what} not found"))
            }
            CoreError::Unauthorized => {
                Self::new(ErrorKind::Authentication, "API key is invalid or revoked")
            }
            CoreError::Forbidden(e @ chorus_core::Forbidden::ModelNotAllowed { .. }) => Self {
                param: Some("model"),
                ..Self::new(ErrorKind::PermissionDenied, e.to_string())
            },
            CoreError::Forbidden(e) => Self::new(ErrorKind::PermissionDenied, e.to_string()),
            CoreError::Invalid(chorus_core::InvalidInput::UnknownModel(model)) => Self {
                param: Some("model"),
                ..Self::new(
                    ErrorKind::NotFound,
                    format!(
                        "the model `{model}` does not exist on this Chorus; GET /v1/models lists the models and aliases"
                    ),
                )
            },
            CoreError::Invalid(
                e @ chorus_core::InvalidInput::UnsupportedParameter { param, .. },
            ) => Self::invalid(param, e.to_string()),
            CoreError::Invalid(e) => Self::new(ErrorKind::InvalidRequest, e.to_string()),
            CoreError::Conflict(e) => Self::new(ErrorKind::InvalidRequest, e.to_string()),
            CoreError::Refused(refusal @ Refusal::TooManyRuns { .. }) => Self {
                retry_after: Some(Duration::from_secs(1)),
                ..Self::new(ErrorKind::RateLimited, refusal.to_string())
            },
            CoreError::Refused(refusal) => Self {
                retry_after: refill,
                ..Self::new(ErrorKind::InsufficientQuota, refusal.to_string())
            },
            CoreError::RateLimited(message) => Self {
                retry_after: Some(window),
                ..Self::new(ErrorKind::RateLimited, message)
            },
            CoreError::InvalidLinkCode(message) => Self::new(ErrorKind::InvalidRequest, message),
            CoreError::Unavailable(message) => Self::new(ErrorKind::Upstream, message),
            CoreError::Auth(e) => Self::new(ErrorKind::InvalidRequest, e.to_string()),
            CoreError::Sso(e) => Self::new(ErrorKind::InvalidRequest, e.to_string()),
            other @ (CoreError::Store(_) | CoreError::Journal(_) | CoreError::Limiter(_)) => {
                tracing::error!(error = %other, "gateway: internal error");
                Self::new(ErrorKind::Internal, "internal error; see the server log")
            }
        }
    }
}

impl From<CoreError> for GatewayError {
    fn from(e: CoreError) -> Self {
        Self::from_core(e, Duration::from_secs(1), None)
    }
}

/// Core's error with the waits of this deployment's limits: the message rate
/// limit's window, and the refill interval when a spent balance refills.
pub fn core_error(core: &chorus_core::Core, e: CoreError) -> GatewayError {
    let config = core.config();
    let window = Duration::from_secs(config.limits.window_secs.max(1));
    let refill = (config.quota.refill_amount > 0.0)
        .then(|| Duration::from_secs(config.quota.refill_interval_secs.max(1)));
    GatewayError::from_core(e, window, refill)
}
