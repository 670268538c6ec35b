//! The page shell: head, navigation (which area is open, who is signed in), the
//! notice left by the last action, and the CSRF field every form includes.

use crate::access::PageAdmin;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// The console's areas, in navigation order: (path, label).
const AREAS: [(&str, &str); 8] = [
    ("/admin", "Overview"),
    ("/admin/accounts", "Accounts"),
    ("/admin/access", "Access"),
    ("/admin/runs", "Runs"),
    ("/admin/providers", "Providers"),
    ("/admin/tools", "Tools"),
    ("/admin/audit", "Audit log"),
    ("/admin/config", "Configuration"),
];

/// A whole page: `area` is the navigation entry to mark, `refresh` reloads the page
/// every so many seconds (the live lists; plain HTML, no script).
pub fn page(
    who: &PageAdmin,
    area: &str,
    title: &str,
    notice: Option<&str>,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · Chorus admin" }
                link rel="stylesheet" href="/admin/admin.css";
            }
            body {
                nav {
                    strong { "Chorus admin" }
                    @for (path, label) in AREAS {
                        a href=(path) class=[(path == area).then_some("here")] { (label) }
                    }
                    span.who { (who.name) " · " a href="/" { "Chat" } }
                }
                main {
                    @if let Some(n) = notice.filter(|n| !n.is_empty()) {
                        p.notice role="status" { (n) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (crate::headers::page(), Html(markup.into_string())).into_response()
}

/// The hidden CSRF field of a form.
pub fn csrf(who: &PageAdmin) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// A one-button form posting to `action` (stop, suspend, ...).
pub fn button(who: &PageAdmin, action: &str, label: &str, danger: bool) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(who))
            button type="submit" class=[danger.then_some("danger")] { (label) }
        }
    }
}
