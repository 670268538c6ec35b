//! The built-in chat client: static files compiled into the binary, no build step, no CDN.

use crate::AppState;
use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;

/// Only our own scripts and styles may run: model output can never load or run code.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One file of `assets/`, served as `/assets/NAME`.
macro_rules! served {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            $content_type,
            include_str!(concat!("assets/", $name)),
        )
    };
}

/// Every file served under `/assets/`: its name, content type and body. The scripts
/// are ES modules that import each other by relative path (`./api.js`).
const ASSETS: &[(&str, &str, &str)] = &[
    served!("app.js", JS),
    served!("api.js", JS),
    served!("dom.js", JS),
    served!("state.js", JS),
    served!("session.js", JS),
    served!("sidebar.js", JS),
    served!("models.js", JS),
    served!("conversation.js", JS),
    served!("messages.js", JS),
    served!("runs.js", JS),
    served!("tools.js", JS),
    served!("markdown.js", JS),
    served!("sso.js", JS),
    served!("account.js", JS),
    served!("chart.js", JS),
    served!("sso.css", CSS),
    served!("account.css", CSS),
    served!("app.css", CSS),
    served!("favicon.svg", SVG),
];

pub fn routes() -> Router<AppState> {
    let index = get(|| async { asset(HTML, include_str!("assets/index.html")) });
    ASSETS.iter().fold(
        Router::new().route("/", index),
        |router, &(name, content_type, body)| {
            router.route(
                &format!("/assets/{name}"),
                get(move || async move { asset(content_type, body) }),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every module a served script imports (`from './x.js'`), and every file the page
    /// names (`/assets/x`), is served: a missing one would be a 404 in the browser.
    #[test]
    fn every_referenced_asset_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|&(name, _, _)| name).collect();
        let pages = ASSETS
            .iter()
            .map(|&(name, _, body)| (name, body, "from './"))
            .chain([("index.html", include_str!("assets/index.html"), "/assets/")]);
        for (name, body, marker) in pages {
            for rest in body.split(marker).skip(1) {
                let file = rest.split(['\'', '"']).next().unwrap();
                assert!(
                    served.contains(&file),
                    "{name} refers to {file}, which is not served"
                );
            }
        }
    }

    /// Every file of `assets/` is served (or is the page itself).
    #[test]
    fn every_asset_file_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/assets");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name == "index.html" || ASSETS.iter().any(|&(served, _, _)| served == name),
                "assets/{name} is not served"
            );
        }
    }
}
