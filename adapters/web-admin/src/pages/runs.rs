//! Runs: live and recent runs of every account, filtered by status, account and
//! model; one run with its text; stopping any run.

use super::format::ago;
use super::{back_to, layout};
use crate::access::{AdminForm, PageAdmin};
use crate::query::{PAGE, RunsQuery};
use crate::refusal::PageError;
use axum::extract::{Path, Query, State};
use axum::response::{Redirect, Response};
use chorus_model::ids::RunId;
use chorus_web::{ApiError, AppState};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct RunsPageQuery {
    #[serde(flatten)]
    runs: RunsQuery,
    /// Reload the page every 5 s.
    live: Option<String>,
    notice: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<RunsPageQuery>,
) -> Result<Response, PageError> {
    let filter = q.runs.filter(&state.core).await?;
    let runs = match &filter {
        Some(f) => state.core.admin_runs(&who.admin, f).await?,
        None => Vec::new(),
    };
    let page = q.runs.page.unwrap_or(0);
    let live = q.live.as_deref() == Some("1");
    let link = |page: u32| {
        let runs = RunsQuery {
            page: Some(page),
            ..q.runs.clone()
        };
        format!(
            "/admin/runs?{}",
            serde_urlencoded::to_string(&runs).unwrap_or_default()
        )
    };
    let status = q.runs.status.as_deref().unwrap_or("");
    let body = html! {
        form.filters method="get" action="/admin/runs" {
            label { "Status" select name="status" {
                @for s in ["", "active", "queued", "streaming", "complete", "stopped", "interrupted", "failed"] {
                    option value=(s) selected[status == s] { @if s.is_empty() { "any" } @else { (s) } }
                }
            } }
            label { "Account" input type="text" name="account" value=(q.runs.account.as_deref().unwrap_or("")); }
            label { "Model" input type="text" name="model" value=(q.runs.model.as_deref().unwrap_or("")); }
            label { "Live" select name="live" {
                option value="" selected[!live] { "off" }
                option value="1" selected[live] { "reload every 5 s" }
            } }
            button type="submit" { "Filter" }
        }
        @if runs.is_empty() {
            p.muted { "No run matches." }
        } @else {
            table #runs {
                tr {
                    th { "Run" } th { "Account" } th { "Model" } th { "Status" }
                    th.num { "Tokens in/out" } th { "Started" } th {}
                }
                @for r in &runs {
                    tr data-run=(r.run.id.as_str()) {
                        td { a href=(format!("/admin/runs/{}", r.run.id.as_str())) { code { (&r.run.id.as_str()[..8.min(r.run.id.as_str().len())]) } } }
                        td { a href=(format!("/admin/accounts/{}", r.run.account_id.as_str())) { (r.account_name) } }
                        td { (r.run.model) }
                        td class=(format!("status-{}", r.run.status.as_str())) { (r.run.status.as_str()) }
                        td.num { (r.run.prompt_tokens.unwrap_or(0)) " / " (r.run.completion_tokens.unwrap_or(0)) }
                        td { (ago(r.run.created_at)) }
                        td { @if r.run.status.is_active() {
                            (layout::button(&who, &format!("/admin/runs/{}/stop", r.run.id.as_str()), "Stop", true))
                        } }
                    }
                }
            }
        }
        div.pager {
            @if page > 0 { a href=(link(page - 1)) { "← Newer" } }
            @if runs.len() as i64 == PAGE { a href=(link(page + 1)) { "Older →" } }
        }
    };
    Ok(layout::page(
        &who,
        "/admin/runs",
        "Runs",
        q.notice.as_deref(),
        live.then_some(5),
        body,
    ))
}

fn run_id(raw: &str) -> Result<RunId, PageError> {
    RunId::parse(raw).ok_or_else(|| PageError(ApiError::not_found("run")))
}

pub async fn run_page(
    State(state): State<AppState>,
    who: PageAdmin,
    Path(id): Path<String>,
    Query(q): Query<RunsPageQuery>,
) -> Result<Response, PageError> {
    let view = state.core.admin_run(&who.admin, &run_id(&id)?).await?;
    let r = &view.run;
    let body = html! {
        table {
            tr { th { "Status" } td class=(format!("status-{}", r.status.as_str())) #run-status { (r.status.as_str()) } }
            tr { th { "Account" } td { a href=(format!("/admin/accounts/{}", r.account_id.as_str())) { (r.account_id.as_str()) } } }
            tr { th { "Model" } td { (r.model) } }
            tr { th { "Tokens" } td { (r.prompt_tokens.unwrap_or(0)) " in, " (r.completion_tokens.unwrap_or(0)) " out" } }
            tr { th { "Finish" } td { (r.finish_reason.as_deref().unwrap_or("")) " " (r.error.as_deref().unwrap_or("")) } }
            tr { th { "Started" } td { (ago(r.created_at)) } }
        }
        @if r.status.is_active() {
            p { (layout::button(&who, &format!("/admin/runs/{}/stop", r.id.as_str()), "Stop", true)) }
        }
        h2 { "Text" }
        pre #run-text { (view.prefix) (r.text) }
        p { a href=(format!("/admin/audit?object={}", r.id.as_str())) { "Audit log of this run" } }
    };
    Ok(layout::page(
        &who,
        "/admin/runs",
        &format!("Run {}", r.id.as_str()),
        q.notice.as_deref(),
        None,
        body,
    ))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state
        .core
        .admin_stop_run(&f.page.admin, &run_id(&id)?)
        .await?;
    Ok(back_to("/admin/runs", "Stop requested."))
}
