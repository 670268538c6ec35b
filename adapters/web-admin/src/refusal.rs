//! How the console refuses: the web API's JSON error for `/api/admin`, a small HTML
//! page with the same status for `/admin`.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chorus_core::CoreError;
use chorus_web::ApiError;
use maud::html;

/// An error shown as an HTML page.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl PageError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(ApiError::new(status, code, message))
    }
}

impl From<CoreError> for PageError {
    fn from(e: CoreError) -> Self {
        Self(e.into())
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = e.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Chorus admin: " (title) }
                    link rel="stylesheet" href="/admin/admin.css";
                }
                body {
                    main {
                        h1 { (title) }
                        p.error data-code=(e.code) { (e.message) }
                        p { a href="/admin" { "Admin console" } " · " a href="/" { "Chat" } }
                    }
                }
            }
        };
        (e.status, crate::headers::page(), Html(body.into_string())).into_response()
    }
}
