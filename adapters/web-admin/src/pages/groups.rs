//! Groups of accounts on the Access page: create one, set the models and tool
//! servers it gives (on top of its members' role), add and remove members (here by
//! name or id, or from an account's page), delete it. Every action is a form
//! answered by a redirect back to the page it came from.

use super::{back_to, layout};
use crate::access::{AdminForm, PageAdmin};
use crate::query::{account_id, parse_resource, split_names};
use crate::refusal::PageError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use chorus_core::{AccessGroup, AccessResource, GroupView};
use chorus_web::AppState;
use maud::{Markup, html};
use serde::Deserialize;

/// A group's list as a person reads it.
fn describe(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The Access page's section: every group with what it gives, and the form that
/// creates one.
pub fn section(who: &PageAdmin, groups: &[GroupView]) -> Markup {
    html! {
        section #groups {
            h2 { "Groups of accounts" }
            p.muted {
                "A group gives its members models and tool servers on top of their role's: an "
                "account may use what its role's lists and its groups' lists name together. A "
                "group adds only where its members' role is limited (a role allowed every one "
                "keeps every one); an empty list adds nothing."
            }
            @if groups.is_empty() { p.muted { "No group yet." } } @else {
                table #group-list {
                    tr { th { "Group" } th { "Models" } th { "Tool servers" } th.num { "Members" } }
                    @for g in groups {
                        tr {
                            td { a href=(format!("/admin/access/groups/{}", g.group.id)) { (g.group.name) } }
                            td { (describe(&g.group.models)) }
                            td { (describe(&g.group.tool_servers)) }
                            td.num { (g.members) }
                        }
                    }
                }
            }
            form.action method="post" action="/admin/access/groups" #create-group {
                (layout::csrf(who))
                label { "New group" input type="text" name="name" required maxlength="64"; }
                button type="submit" { "Create group" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u32>,
    notice: Option<String>,
}

fn group_path(id: &str) -> String {
    format!("/admin/access/groups/{id}")
}

/// The form of one of a group's lists.
fn list_form(
    who: &PageAdmin,
    group: &AccessGroup,
    resource: AccessResource,
    known: &[String],
) -> Markup {
    let (list, title) = match resource {
        AccessResource::Models => (&group.models, "Models"),
        AccessResource::ToolServers => (&group.tool_servers, "Tool servers"),
    };
    html! {
        form.access method="post" action=(format!("{}/{}", group_path(&group.id), resource.as_str())) id=(format!("group-{}", resource.as_str())) {
            (layout::csrf(who))
            h3 { (title) }
            p { "Gives: " strong.effective { (describe(list)) } }
            textarea name="names" rows="4" cols="40" { (list.join("\n")) }
            p.muted { "One a line; empty gives none. Available: "
                @if known.is_empty() { "none" } @else { (known.join(", ")) }
                @if resource == AccessResource::Models { "; or PROVIDER/* for a provider's models, * for all." }
                @else { "; or * for all." } }
            button type="submit" { "Save " (title.to_lowercase()) }
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = q.page.unwrap_or(0);
    let d = state.core.access_group(&who.admin, &id, page).await?;
    let view = state.core.access_view(&who.admin).await?;
    let g = &d.group.group;
    let here = group_path(&g.id);
    let body = html! {
        p { a href="/admin/access" { "← Access" } " · "
            (d.group.members) @if d.group.members == 1 { " member" } @else { " members" } }
        div.cards {
            div.card { (list_form(&who, g, AccessResource::Models, &view.models)) }
            div.card { (list_form(&who, g, AccessResource::ToolServers, &view.tool_servers)) }
        }
        h2 { "Members" }
        form.action method="post" action=(format!("{here}/members")) #add-member {
            (layout::csrf(&who))
            input type="hidden" name="action" value="add";
            label { "Account name or id" input type="text" name="account" required; }
            button type="submit" { "Add to group" }
        }
        @if d.member_list.is_empty() { p.muted { "No member" @if page > 0 { " on this page" } "." } } @else {
            table #members {
                tr { th { "Account" } th { "Role" } th { "Added" } th {} }
                @for m in &d.member_list {
                    tr {
                        td { a href=(format!("/admin/accounts/{}", m.account_id)) { (m.name) } }
                        td { (m.role) }
                        td { (super::format::ago(m.added_at)) }
                        td {
                            form.inline method="post" action=(format!("{here}/members")) {
                                (layout::csrf(&who))
                                input type="hidden" name="action" value="remove";
                                input type="hidden" name="account" value=(m.account_id);
                                button type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
            p {
                @if page > 0 { a href=(format!("{here}?page={}", page - 1)) { "← Previous" } " " }
                @if d.member_list.len() == chorus_core::GROUP_MEMBERS_PAGE {
                    a href=(format!("{here}?page={}", page + 1)) { "Next →" }
                }
            }
        }
        h2 { "Delete" }
        p.muted { "Its members keep what their role and their other groups give." }
        (layout::button(&who, &format!("{here}/delete"), "Delete group", true))
        p { a href=(format!("/admin/audit?object={}", g.id)) { "Audit log of this group" } }
    };
    Ok(layout::page(
        &who,
        "/admin/access",
        &format!("Group {}", g.name),
        q.notice.as_deref(),
        None,
        body,
    ))
}

#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    f: AdminForm<CreateForm>,
) -> Result<Redirect, PageError> {
    let group = state
        .core
        .create_access_group(&f.page.admin, &f.form.name)
        .await?;
    Ok(back_to(
        &group_path(&group.id),
        &format!("Created the group {}; it gives nothing yet.", group.name),
    ))
}

#[derive(Deserialize)]
pub struct ListForm {
    #[serde(default)]
    names: String,
}

pub async fn set_list(
    State(state): State<AppState>,
    Path((id, resource)): Path<(String, String)>,
    f: AdminForm<ListForm>,
) -> Result<Redirect, PageError> {
    let resource = parse_resource(&resource)?;
    let changed = state
        .core
        .set_group_access(
            &f.page.admin,
            &id,
            resource,
            split_names(vec![f.form.names]),
        )
        .await?;
    let what = match resource {
        AccessResource::Models => "models",
        AccessResource::ToolServers => "tool servers",
    };
    let notice = if changed {
        format!("Saved the group's {what}.")
    } else {
        format!("The group's {what} were already so.")
    };
    Ok(back_to(&group_path(&id), &notice))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state.core.delete_access_group(&f.page.admin, &id).await?;
    Ok(back_to("/admin/access", "Group deleted."))
}

/// `add` (the default) or `remove`.
fn adding(action: &str) -> Result<bool, PageError> {
    match action {
        "" | "add" => Ok(true),
        "remove" => Ok(false),
        other => Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("action must be add or remove, not {other:?}"),
        )),
    }
}

fn membership_notice(member: bool, changed: bool) -> &'static str {
    match (member, changed) {
        (true, true) => "Added to the group.",
        (true, false) => "Already in the group.",
        (false, true) => "Removed from the group.",
        (false, false) => "Was not in the group.",
    }
}

#[derive(Deserialize)]
pub struct MemberForm {
    account: String,
    #[serde(default)]
    action: String,
}

/// From the group's page: an account by name or id.
pub async fn member(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<MemberForm>,
) -> Result<Redirect, PageError> {
    let member = adding(&f.form.action)?;
    let account = state
        .core
        .account_named(&f.page.admin, &f.form.account)
        .await?;
    let changed = state
        .core
        .set_group_member(&f.page.admin, &id, &account, member)
        .await?;
    Ok(back_to(
        &group_path(&id),
        membership_notice(member, changed),
    ))
}

#[derive(Deserialize)]
pub struct AccountGroupForm {
    group: String,
    #[serde(default)]
    action: String,
}

/// From an account's page: a group by id.
pub async fn account_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<AccountGroupForm>,
) -> Result<Redirect, PageError> {
    let member = adding(&f.form.action)?;
    let changed = state
        .core
        .set_group_member(&f.page.admin, &f.form.group, &account_id(&id)?, member)
        .await?;
    Ok(back_to(
        &format!("/admin/accounts/{id}"),
        membership_notice(member, changed),
    ))
}

/// An account page's section: its groups (each with a remove button) and a form
/// adding it to another.
pub fn account_section(
    who: &PageAdmin,
    account: &str,
    mine: &[AccessGroup],
    all: &[AccessGroup],
) -> Markup {
    let action = format!("/admin/accounts/{account}/groups");
    let others: Vec<&AccessGroup> = all.iter().filter(|g| !mine.contains(g)).collect();
    html! {
        h2 { "Access groups" }
        @if mine.is_empty() { p.muted { "In no group: its role's lists alone decide." } } @else {
            table #account-groups {
                tr { th { "Group" } th { "Models" } th { "Tool servers" } th {} }
                @for g in mine {
                    tr {
                        td { a href=(group_path(&g.id)) { (g.name) } }
                        td { (describe(&g.models)) }
                        td { (describe(&g.tool_servers)) }
                        td {
                            form.inline method="post" action=(action) {
                                (layout::csrf(who))
                                input type="hidden" name="action" value="remove";
                                input type="hidden" name="group" value=(g.id);
                                button type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        @if !others.is_empty() {
            form.action method="post" action=(action) #add-to-group {
                (layout::csrf(who))
                input type="hidden" name="action" value="add";
                label { "Group" select name="group" {
                    @for g in &others { option value=(g.id) { (g.name) } }
                } }
                button type="submit" { "Add to group" }
            }
        }
    }
}
