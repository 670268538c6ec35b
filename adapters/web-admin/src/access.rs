//! The console's extractors: the admin capability from an API request (key or
//! session, as the web API authenticates) or from a page request (the session cookie
//! only), and a form that must carry the session's CSRF token and come from this
//! server. Core's `Core::admin` is the one role check.

use crate::csrf;
use crate::refusal::PageError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chorus_core::Admin;
use chorus_web::{ApiError, AppState, Authed};
use serde::de::DeserializeOwned;

/// The admin capability of an API request.
pub struct ApiAdmin(pub Admin);

impl FromRequestParts<AppState> for ApiAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authed(account) = Authed::from_request_parts(parts, state).await?;
        Ok(ApiAdmin(state.core.admin(&account)?))
    }
}

/// The admin capability of a page request, with what its forms need.
pub struct PageAdmin {
    pub admin: Admin,
    /// The admin's name, for the navigation bar.
    pub name: String,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
}

impl FromRequestParts<AppState> for PageAdmin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let session = chorus_web::session_cookie(&parts.headers).ok_or_else(|| {
            PageError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in to the chat with an admin account first",
            )
        })?;
        let account = state
            .core
            .account_by_session(&session, chorus_web::user_agent(parts))
            .await?
            .ok_or_else(|| {
                PageError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "session expired; log in again",
                )
            })?;
        let admin = state.core.admin(&account)?;
        Ok(PageAdmin {
            admin,
            name: account.name,
            csrf: csrf::token(&session),
        })
    }
}

/// Most bytes a console form may hold.
const MAX_FORM: usize = 16 * 1024;

/// A console form: the admin who sent it and its fields, accepted only with the
/// session's CSRF token (`csrf` field) and from this server's own pages (Origin).
pub struct AdminForm<T> {
    pub page: PageAdmin,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for AdminForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        chorus_web::check_same_origin(&parts.headers, state, true)?;
        let page = PageAdmin::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a form may hold at most {MAX_FORM} bytes"),
            )
        })?;
        let session = chorus_web::session_cookie(&parts.headers).unwrap_or_default();
        let token: Token = parse(&bytes)?;
        if !csrf::verify(&session, &token.csrf) {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this form's security token is missing or stale; reload the page and try again",
            ));
        }
        Ok(AdminForm {
            page,
            form: parse(&bytes)?,
        })
    }
}

fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            format!("the form is malformed: {e}"),
        )
    })
}
