//! Accounts: search by name or any identity, sorted by spend, last activity or
//! name, a page at a time.

use super::format::{credits, maybe_ago};
use super::layout;
use crate::access::PageAdmin;
use crate::query::AccountsQuery;
use crate::refusal::PageError;
use axum::extract::{Query, State};
use axum::response::Response;
use chorus_web::AppState;
use maud::html;

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<AccountsQuery>,
) -> Result<Response, PageError> {
    let sort = q.sort()?;
    let page = q.page.unwrap_or(0);
    let list = state
        .core
        .admin_accounts(&who.admin, q.q.as_deref(), sort, page)
        .await?;
    let link = |page: u32| {
        let q = AccountsQuery {
            page: Some(page),
            ..q.clone()
        };
        format!(
            "/admin/accounts?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let body = html! {
        form.filters method="get" action="/admin/accounts" {
            label { "Name or identity" input type="search" name="q" value=(q.q.as_deref().unwrap_or("")) placeholder="alice, a Discord or Matrix id…"; }
            label { "Sort by" select name="sort" {
                @for (value, label) in [("spend", "spend"), ("last_active", "last activity"), ("name", "name")] {
                    option value=(value) selected[sort.as_str() == value] { (label) }
                }
            } }
            button type="submit" { "Search" }
        }
        @if list.is_empty() {
            p.muted { "No account matches." }
        } @else {
            table #accounts {
                tr {
                    th { "Name" } th { "Role" } th { "Status" } th.num { "Balance" }
                    th.num { "Spent" } th { "Last active" }
                }
                @for a in &list {
                    tr {
                        td { a href=(format!("/admin/accounts/{}", a.account.id.as_str())) { (a.account.name) } }
                        td { (a.account.role.as_str()) }
                        td class=(format!("status-{}", a.account.status)) { (a.account.status) }
                        td.num { (credits(a.balance)) }
                        td.num { (credits(a.spent)) }
                        td { (maybe_ago(a.last_active_at)) }
                    }
                }
            }
        }
        div.pager {
            @if page > 0 { a href=(link(page - 1)) { "← Previous" } }
            @if list.len() as i64 == chorus_core::ADMIN_PAGE { a href=(link(page + 1)) { "Next →" } }
        }
    };
    Ok(layout::page(
        &who,
        "/admin/accounts",
        "Accounts",
        None,
        None,
        body,
    ))
}
