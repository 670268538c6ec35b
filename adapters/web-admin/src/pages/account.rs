//! One account: its identities, balance, keys and sessions, a page of its ledger,
//! and the actions on it (credits, role, suspend or reactivate, revoke access,
//! unlink an identity, delete), each a form answered by a redirect back here.

use super::chart::{self, Bar};
use super::format::{ago, credits, maybe_ago};
use super::{back_to, layout};
use crate::access::{AdminForm, PageAdmin};
use crate::query::{account_id, parse_role};
use crate::refusal::PageError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use chorus_web::AppState;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct PageQuery {
    ledger_page: Option<u32>,
    notice: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let id = account_id(&id)?;
    let ledger_page = q.ledger_page.unwrap_or(0);
    let d = state
        .core
        .admin_account(&who.admin, &id, ledger_page)
        .await?;
    let all_groups = state.core.all_access_groups(&who.admin).await?;
    let a = &d.listing.account;
    let here = format!("/admin/accounts/{}", a.id.as_str());
    let act = |what: &str| format!("{here}/{what}");
    let body = html! {
        table #summary {
            tr { th { "Status" } td class=(format!("status-{}", a.status)) #status { (a.status) } }
            tr { th { "Role" } td #role { (a.role.as_str()) } }
            tr { th { "Balance" } td #balance { (credits(d.listing.balance)) } }
            tr { th { "Spent" } td { (credits(d.listing.spent)) } }
            tr { th { "Last active" } td { (maybe_ago(d.listing.last_active_at)) } }
            tr { th { "Conversations" } td { (d.conversations) } }
            tr { th { "Web sessions" } td #sessions { (d.sessions) } }
            tr { th { "Created" } td { (ago(a.created_at)) } }
            tr { th { "Auto-refill" } td #refill { (refill_text(&d.listing, &state)) } }
        }

        h2 { "Usage, last 30 days" }
        (usage_chart(&d.usage))
        @if d.usage.by_model.is_empty() { p.muted { "No reply in 30 days." } } @else {
            table #usage-by-model {
                tr { th { "Model" } th.num { "Replies" } th.num { "Prompt tokens" } th.num { "Completion tokens" } th.num { "Credits" } }
                @for m in &d.usage.by_model {
                    tr { td { (m.key) } td.num { (m.runs) } td.num { (m.prompt_tokens) } td.num { (m.completion_tokens) } td.num { (m.cost) } }
                }
            }
        }

        h2 { "Actions" }
        form.action method="post" action=(act("credits")) #grant {
            (layout::csrf(&who))
            label { "Credits (negative deducts)" input type="number" name="amount" step="any" required; }
            label { "Note" input type="text" name="note" maxlength="300"; }
            button type="submit" { "Grant" }
        }
        form.action method="post" action=(act("refill")) #refill-form {
            (layout::csrf(&who))
            label { "Refill credits (empty: default)" input type="number" name="amount" step="any" min="0"
                value=(d.listing.refill_amount.map(credits).unwrap_or_default()); }
            label { "Every … hours (empty: default)" input type="number" name="interval_hours" step="any" min="0.0167"
                value=(d.listing.refill_interval_secs.map(|s| chart::count(s as f64 / 3600.0)).unwrap_or_default()); }
            button type="submit" { "Set refill" }
        }
        form.action method="post" action=(act("role")) {
            (layout::csrf(&who))
            label { "Role" select name="role" {
                option value="user" selected[a.role.as_str() == "user"] { "user" }
                option value="admin" selected[a.role.as_str() == "admin"] { "admin" }
            } }
            button type="submit" { "Set role" }
        }
        p {
            @if a.is_suspended() {
                (layout::button(&who, &act("reactivate"), "Reactivate", false))
            } @else {
                (layout::button(&who, &act("suspend"), "Suspend", true))
            }
            " "
            (layout::button(&who, &act("revoke-access"), "Revoke all sessions and keys", true))
        }
        form.action method="post" action=(act("delete")) {
            (layout::csrf(&who))
            label { "Type the name to delete the account and its data" input type="text" name="confirm" required autocomplete="off"; }
            button.danger type="submit" { "Delete account" }
        }

        (super::groups::account_section(&who, a.id.as_str(), &d.groups, &all_groups))

        h2 { "Identities" }
        table #identities {
            tr { th { "Platform" } th { "External id" } th { "Label" } th { "Linked" } th {} }
            @for i in &d.identities {
                tr {
                    td { (i.identity.platform) }
                    td { (i.identity.external_id) }
                    td { (i.identity.label.as_deref().unwrap_or("")) }
                    td { (ago(i.identity.created_at)) }
                    td {
                        form.inline method="post" action=(act("unlink")) {
                            (layout::csrf(&who))
                            input type="hidden" name="identity" value=(i.identity.id);
                            button type="submit" { "Unlink" }
                        }
                    }
                }
            }
        }

        h2 { "API keys" }
        @if d.api_keys.is_empty() { p.muted { "None." } } @else {
            table #keys {
                tr { th { "Name" } th { "Prefix" } th { "Created" } th { "Last used" } th { "Revoked" } }
                @for k in &d.api_keys {
                    tr {
                        td { (k.name) } td { code { (k.prefix) } } td { (ago(k.created_at)) }
                        td { (maybe_ago(k.last_used_at)) } td { (maybe_ago(k.revoked_at)) }
                    }
                }
            }
        }

        h2 { "Ledger" }
        table #ledger {
            tr { th { "When" } th { "Reason" } th.num { "Amount" } th { "Model" } th { "Note" } }
            @for e in &d.ledger {
                tr {
                    td { (ago(e.created_at)) } td { (e.reason) } td.num { (credits(e.amount)) }
                    td { (e.model.as_deref().unwrap_or("")) } td { (e.note.as_deref().unwrap_or("")) }
                }
            }
        }
        div.pager {
            @if ledger_page > 0 { a href=(format!("{here}?ledger_page={}", ledger_page - 1)) { "← Newer" } }
            @if d.ledger.len() as i64 == chorus_core::ADMIN_PAGE {
                a href=(format!("{here}?ledger_page={}", ledger_page + 1)) { "Older →" }
            }
        }
        p { a href=(format!("/admin/runs?account={}", a.name)) { "Runs of this account" } " · "
            a href=(format!("/admin/audit?object={}", a.id.as_str())) { "Audit log of this account" } }
    };
    Ok(layout::page(
        &who,
        "/admin/accounts",
        &format!("Account {}", a.name),
        q.notice.as_deref(),
        None,
        body,
    ))
}

fn here(id: &str) -> String {
    format!("/admin/accounts/{id}")
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn suspend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state
        .core
        .suspend_account(&f.page.admin, &account_id(&id)?)
        .await?;
    Ok(back_to(
        &here(&id),
        "Suspended; its running replies were stopped.",
    ))
}

pub async fn reactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state
        .core
        .reactivate_account(&f.page.admin, &account_id(&id)?)
        .await?;
    Ok(back_to(&here(&id), "Reactivated."))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn role(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<RoleForm>,
) -> Result<Redirect, PageError> {
    let role = parse_role(&f.form.role)?;
    state
        .core
        .set_role(&f.page.admin, &account_id(&id)?, role)
        .await?;
    Ok(back_to(
        &here(&id),
        &format!("Role set to {}.", role.as_str()),
    ))
}

#[derive(Deserialize)]
pub struct CreditsForm {
    amount: String,
    #[serde(default)]
    note: String,
}

async fn credits_action(
    state: &AppState,
    f: &AdminForm<CreditsForm>,
    id: &str,
) -> Result<i64, PageError> {
    let amount: f64 = f.form.amount.trim().parse().map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("credits must be a number, not {:?}", f.form.amount),
        )
    })?;
    Ok(state
        .core
        .grant_credits(&f.page.admin, &account_id(id)?, amount, Some(&f.form.note))
        .await?)
}

pub async fn grant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<CreditsForm>,
) -> Result<Redirect, PageError> {
    let balance = credits_action(&state, &f, &id).await?;
    Ok(back_to(
        &here(&id),
        &format!("Done; the balance is {}.", credits(balance)),
    ))
}

pub async fn revoke_access(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    let (sessions, keys) = state
        .core
        .revoke_access(&f.page.admin, &account_id(&id)?)
        .await?;
    Ok(back_to(
        &here(&id),
        &format!("Ended {sessions} sessions and revoked {keys} API keys."),
    ))
}

#[derive(Deserialize)]
pub struct UnlinkForm {
    identity: String,
}

pub async fn unlink(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<UnlinkForm>,
) -> Result<Redirect, PageError> {
    state
        .core
        .admin_unlink_identity(&f.page.admin, &account_id(&id)?, &f.form.identity)
        .await?;
    Ok(back_to(&here(&id), "Identity unlinked."))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<DeleteForm>,
) -> Result<Redirect, PageError> {
    state
        .core
        .delete_account(&f.page.admin, &account_id(&id)?, &f.form.confirm)
        .await?;
    Ok(back_to("/admin/accounts", "Account deleted."))
}

/// The account's auto-refill in words: its own, or the `[quota]` default.
fn refill_text(listing: &chorus_core::AccountListing, state: &AppState) -> String {
    let quota = &state.core.config().quota;
    let amount = listing
        .refill_amount
        .unwrap_or(chorus_model::money::credits_to_micros(quota.refill_amount));
    let secs = listing
        .refill_interval_secs
        .unwrap_or(quota.refill_interval_secs as i64);
    let own = listing.refill_amount.is_some() || listing.refill_interval_secs.is_some();
    let source = if own { "its own" } else { "the default" };
    if amount <= 0 {
        format!("none ({source})")
    } else {
        format!(
            "{} credits when a reply would be refused, at most every {} h ({source})",
            credits(amount),
            chart::count(secs as f64 / 3600.0)
        )
    }
}

/// Credits spent per day over the report's window, as bars.
fn usage_chart(usage: &chorus_core::UsageReport) -> maud::Markup {
    let bars: Vec<Bar> = usage
        .balance_by_day
        .iter()
        .map(|day| {
            let line = usage.by_day.iter().find(|l| l.key == day.date);
            let (cost, runs) = line.map_or((0.0, 0), |l| (l.cost, l.runs));
            Bar {
                value: cost,
                title: format!(
                    "{}: {cost} credits, {runs} replies, balance {} at the end",
                    day.date, day.balance
                ),
            }
        })
        .collect();
    let first = usage
        .balance_by_day
        .first()
        .map(|d| d.date.clone())
        .unwrap_or_default();
    let last = usage
        .balance_by_day
        .last()
        .map(|d| d.date.clone())
        .unwrap_or_default();
    chart::bars(
        "chart-usage",
        "Credits spent per day",
        &bars,
        &first,
        &last,
        |v| format!("{}", (v * 10_000.0).round() / 10_000.0),
    )
}

#[derive(Deserialize)]
pub struct RefillForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    interval_hours: String,
}

/// An optional number from a form field (empty: `None`).
fn optional_number(field: &str, raw: &str) -> Result<Option<f64>, PageError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field} must be a number, not {raw:?}"),
        )
    })
}

pub async fn refill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<RefillForm>,
) -> Result<Redirect, PageError> {
    let amount = optional_number("the refill amount", &f.form.amount)?;
    let hours = optional_number("the refill interval", &f.form.interval_hours)?;
    state
        .core
        .set_refill(
            &f.page.admin,
            &account_id(&id)?,
            amount,
            hours.map(|h| (h * 3600.0).round() as i64),
        )
        .await?;
    Ok(back_to(&here(&id), "Auto-refill set."))
}
