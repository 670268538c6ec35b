//! Configuration: the effective configuration, secrets masked (the same dump as
//! `chorus config show`).

use super::layout;
use crate::ConfigDump;
use crate::access::PageAdmin;
use axum::Extension;
use axum::response::Response;
use maud::html;

pub async fn page(who: PageAdmin, Extension(dump): Extension<ConfigDump>) -> Response {
    let body = html! {
        p.muted { "Defaults, then the config file, then CHORUS_* environment overrides; secrets are masked." }
        pre #config { (dump.0.as_ref()) }
    };
    layout::page(&who, "/admin/config", "Configuration", None, None, body)
}
