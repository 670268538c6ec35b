//! Tools: this instance's MCP servers (state, tools, restarts, last error; restart
//! one) and the code sandbox (whether Docker answers; the executions running on the
//! engine, every instance's, with their run, account and age; kill one).

use super::format::ago;
use super::{back_to, layout};
use crate::access::{AdminForm, PageAdmin};
use crate::refusal::PageError;
use axum::extract::{Path, Query, State};
use axum::response::{Redirect, Response};
use chorus_web::AppState;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let t = state.core.tools_page(&who.admin).await?;
    let sandbox = &t.sandbox;
    let body = html! {
        h2 { "MCP servers" }
        p.muted {
            "The servers of instance " code { (t.instance) } " (each instance runs its own). "
            "Restart stops the server's process (or closes its HTTP session) and starts it "
            "again at once; a call in flight ends with a tool error saying so."
        }
        @if t.mcp_servers.is_empty() {
            p.muted { "No MCP server is configured ([[mcp.servers]])." }
        } @else {
            table #mcp-servers {
                tr {
                    th { "Server" } th { "Kind" } th { "State" } th { "Tools" }
                    th.num { "Restarts" } th { "Last error" } th {}
                }
                @for s in &t.mcp_servers {
                    tr data-server=(s.id) {
                        td { code { (s.id) } }
                        td { (s.kind) }
                        td class=(format!("state state-{}", s.state)) { (s.state) }
                        td { (s.tools.len()) @if !s.tools.is_empty() { span.muted { ": " (s.tools.join(", ")) } } }
                        td.num.restarts { (s.restarts) }
                        td { (s.last_error.as_deref().unwrap_or("")) }
                        td { (layout::button(&who, &format!("/admin/tools/mcp/{}/restart", s.id), "Restart", false)) }
                    }
                }
            }
        }
        h2 { "Sandbox" }
        p #sandbox-state {
            @if !sandbox.enabled {
                "The code sandbox is disabled (sandbox.enabled = false)."
            } @else if sandbox.reachable {
                strong.ok { "Docker answers." }
                " Executions are listed from Docker by label: every instance's."
            } @else {
                strong.error { "Docker does not answer" }
                ": code_interpreter is not offered until it does."
            }
        }
        @if let Some(e) = &sandbox.error { p.error { (e) } }
        @if sandbox.reachable {
            @if sandbox.executions.is_empty() {
                p.muted #no-executions { "No execution is running." }
            } @else {
                table #executions {
                    tr {
                        th { "Execution" } th { "Run" } th { "Account" } th { "Instance" }
                        th { "Started" } th { "State" } th {}
                    }
                    @for e in &sandbox.executions {
                        @let x = &e.execution;
                        tr data-execution=(x.id) {
                            td { code { (x.id) } }
                            td { @if let Some(run) = &x.run_id {
                                a href=(format!("/admin/runs/{run}")) { code { (&run[..8.min(run.len())]) } }
                            } }
                            td { @match (&x.account_id, &e.account_name) {
                                (Some(id), Some(name)) => a href=(format!("/admin/accounts/{id}")) { (name) },
                                (Some(id), None) => code { (id) },
                                _ => "",
                            } }
                            td { code { (x.instance.as_deref().unwrap_or("")) } }
                            td { (ago(x.started_at)) }
                            td { @if x.program_running { "running" } @else { "preparing" } }
                            td { (layout::button(&who, &format!("/admin/tools/sandbox/{}/kill", x.id), "Kill", true)) }
                        }
                    }
                }
            }
        }
        p { a href="/admin/audit?action=restart_mcp_server" { "Audit log of restarts" } " · "
            a href="/admin/audit?action=kill_sandbox_execution" { "of kills" } }
    };
    Ok(layout::page(
        &who,
        "/admin/tools",
        "Tools",
        q.notice.as_deref(),
        None,
        body,
    ))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn restart_mcp_server(
    State(state): State<AppState>,
    Path(server): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state
        .core
        .admin_restart_mcp_server(&f.page.admin, &server)
        .await?;
    Ok(back_to(
        "/admin/tools",
        &format!("Restarting MCP server {server}."),
    ))
}

pub async fn kill_execution(
    State(state): State<AppState>,
    Path(execution): Path<String>,
    f: AdminForm<Empty>,
) -> Result<Redirect, PageError> {
    state
        .core
        .admin_kill_execution(&f.page.admin, &execution)
        .await?;
    Ok(back_to(
        "/admin/tools",
        &format!("Killed sandbox execution {execution}."),
    ))
}
