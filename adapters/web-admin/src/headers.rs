//! The headers the console answers with: pages (no caching, a CSP that lets no
//! script run and only this server's stylesheet load, no framing) and CSV downloads.

use axum::http::HeaderName;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
};
use axum::response::IntoResponse;

/// Headers of every console page.
pub fn page() -> [(HeaderName, &'static str); 2] {
    [
        (
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (CACHE_CONTROL, "no-store"),
    ]
}

/// A CSV download named `chorus-audit.csv`.
pub fn csv(csv: String) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"chorus-audit.csv\"",
            ),
            (CACHE_CONTROL, "no-store"),
        ],
        csv,
    )
}
