//! Audit log: admin changes and security events, filtered, newest first, a page at
//! a time, and the same filter as a CSV download.

use super::format::ago;
use super::layout;
use crate::access::PageAdmin;
use crate::query::{AuditQuery, PAGE};
use crate::refusal::PageError;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chorus_web::AppState;
use maud::html;

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let entries = state.core.audit_log(&who.admin, &q.filter()?).await?;
    let query = |q: &AuditQuery| serde_urlencoded::to_string(q).unwrap_or_default();
    let kind = q.kind.as_deref().unwrap_or("");
    let older = entries
        .last()
        .filter(|_| entries.len() as i64 == PAGE)
        .map(|e| {
            query(&AuditQuery {
                before: Some(e.created_at),
                ..q.clone()
            })
        });
    let csv_query = query(&AuditQuery {
        before: None,
        ..q.clone()
    });
    let body = html! {
        form.filters method="get" action="/admin/audit" {
            label { "Kind" select name="kind" {
                @for k in ["", "admin", "security"] {
                    option value=(k) selected[kind == k] { @if k.is_empty() { "any" } @else { (k) } }
                }
            } }
            label { "Action" input type="text" name="action" value=(q.action.as_deref().unwrap_or("")) placeholder="suspend, grant, login_failed…"; }
            label { "Object id" input type="text" name="object" value=(q.object.as_deref().unwrap_or("")); }
            button type="submit" { "Filter" }
            a #csv href=(format!("/admin/audit.csv?{csv_query}")) { "Export CSV" }
        }
        @if entries.is_empty() {
            p.muted { "Nothing recorded matches." }
        } @else {
            table #audit {
                tr { th { "When" } th { "Kind" } th { "Who" } th { "Action" } th { "Object" } th { "Before" } th { "After" } }
                @for e in &entries {
                    tr {
                        td { (ago(e.created_at)) }
                        td { (e.kind) }
                        td { (e.actor_name) }
                        td { (e.action) }
                        td { (e.object_type) " " code { (e.object_id.as_deref().unwrap_or("")) } }
                        td { code { (e.before.as_ref().map(|v| v.to_string()).unwrap_or_default()) } }
                        td { code { (e.after.as_ref().map(|v| v.to_string()).unwrap_or_default()) } }
                    }
                }
            }
        }
        @if let Some(older) = older {
            div.pager { a href=(format!("/admin/audit?{older}")) { "Older →" } }
        }
    };
    Ok(layout::page(
        &who,
        "/admin/audit",
        "Audit log",
        None,
        None,
        body,
    ))
}

pub async fn csv(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<AuditQuery>,
) -> Result<impl IntoResponse, PageError> {
    let csv = state.core.audit_csv(&who.admin, &q.filter()?).await?;
    Ok(crate::headers::csv(csv))
}
