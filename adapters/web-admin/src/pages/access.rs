//! Access: which models and tool servers each role may use. Per role and list, a form
//! chooses the config file's default, every one, or only the names given; the change
//! is audited and applies on every surface (on other instances within seconds). The
//! groups of accounts follow (`groups.rs`).

use super::{back_to, layout};
use crate::access::{AdminForm, PageAdmin};
use crate::query::{access_setting, parse_resource, parse_role};
use crate::refusal::PageError;
use axum::extract::{Path, Query, State};
use axum::response::{Redirect, Response};
use chorus_core::{AccessResource, RoleAccessView};
use chorus_web::AppState;
use maud::{Markup, html};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

/// A list as a person reads it: every one, none, or the names.
fn describe(allow: &Option<Vec<String>>) -> String {
    match allow {
        None => "every one".into(),
        Some(list) if list.is_empty() => "none".into(),
        Some(list) => list.join(", "),
    }
}

/// The form of one role's list.
fn list_form(
    who: &PageAdmin,
    role: &RoleAccessView,
    resource: AccessResource,
    known: &[String],
) -> Markup {
    let (allow, source, config, title) = match resource {
        AccessResource::Models => (
            &role.models,
            role.models_source,
            &role.config_models,
            "Models",
        ),
        AccessResource::ToolServers => (
            &role.tool_servers,
            role.tool_servers_source,
            &role.config_tool_servers,
            "Tool servers",
        ),
    };
    let id = format!("{}-{}", role.role, resource.as_str());
    let mode = match (source, allow) {
        ("config", _) => "config",
        (_, None) => "all",
        _ => "only",
    };
    let names = allow.as_deref().unwrap_or_default().join("\n");
    html! {
        form.access method="post" action=(format!("/admin/access/{}/{}", role.role, resource.as_str())) id=(id) {
            (layout::csrf(who))
            h3 { (title) }
            p {
                "Now: " strong.effective { (describe(allow)) }
                span.muted { " (" (if source == "config" { "from the config file" } else { "set here" }) ")" }
            }
            p.muted { "Config file: " (describe(config)) }
            fieldset {
                label.choice { input type="radio" name="mode" value="config" checked[mode == "config"]; "Use the config file" }
                label.choice { input type="radio" name="mode" value="all" checked[mode == "all"]; "Every one" }
                label.choice { input type="radio" name="mode" value="only" checked[mode == "only"]; "Only these (one a line):" }
            }
            textarea name="names" rows="4" cols="40" { (names) }
            p.muted { "Available: " (known.join(", "))
                @if resource == AccessResource::Models { "; or PROVIDER/* for a provider's models, * for all." } }
            button type="submit" { "Save " (title.to_lowercase()) " of " (role.role) }
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let view = state.core.access_view(&who.admin).await?;
    let body = html! {
        p.muted {
            "Which models and tool servers each role may use, on every surface: model lists, "
            "the chat surfaces' model commands, the API and the gateway, and the tools offered "
            "to a model. The config file's [access] section is the default; what is set here "
            "overrides it (other instances apply a change within " (view.refresh_secs) " s)."
        }
        @for role in &view.roles {
            section.role id=(format!("role-{}", role.role)) {
                h2 { "Role " (role.role) }
                div.cards {
                    div.card { (list_form(&who, role, AccessResource::Models, &view.models)) }
                    div.card { (list_form(&who, role, AccessResource::ToolServers, &view.tool_servers)) }
                }
            }
        }
        (super::groups::section(&who, &view.groups))
        p { a href="/admin/audit?action=set_access" { "Audit log of access changes" } }
    };
    Ok(layout::page(
        &who,
        "/admin/access",
        "Access",
        q.notice.as_deref(),
        None,
        body,
    ))
}

#[derive(Deserialize)]
pub struct AccessForm {
    mode: String,
    #[serde(default)]
    names: String,
}

pub async fn set(
    State(state): State<AppState>,
    Path((role, resource)): Path<(String, String)>,
    f: AdminForm<AccessForm>,
) -> Result<Redirect, PageError> {
    let role = parse_role(&role)?;
    let resource = parse_resource(&resource)?;
    let setting = access_setting(&f.form.mode, vec![f.form.names])?;
    let changed = state
        .core
        .set_access(&f.page.admin, role, resource, setting)
        .await?;
    let what = match resource {
        AccessResource::Models => "models",
        AccessResource::ToolServers => "tool servers",
    };
    let notice = if changed {
        format!("Saved the {what} of role {}.", role.as_str())
    } else {
        format!("The {what} of role {} were already so.", role.as_str())
    };
    Ok(back_to("/admin/access", &notice))
}
