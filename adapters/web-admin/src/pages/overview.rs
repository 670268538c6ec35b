//! Overview: replies streaming now, spend today and this month, each surface's
//! state and each provider's health on this instance. Reloads every 10 s.

use super::format::{ago, credits};
use super::layout;
use crate::access::PageAdmin;
use crate::refusal::PageError;
use axum::extract::State;
use axum::response::Response;
use chorus_core::SurfaceState;
use chorus_web::AppState;
use maud::html;

pub async fn page(State(state): State<AppState>, who: PageAdmin) -> Result<Response, PageError> {
    let o = state.core.overview(&who.admin).await?;
    let body = html! {
        div.cards {
            div.card { div.muted { "Streaming now" } div.value #streaming-now { (o.streaming_now) } }
            div.card { div.muted { "Spend today (UTC)" } div.value { (credits(o.spend_today)) } }
            div.card { div.muted { "Spend this month" } div.value { (credits(o.spend_month)) } }
        }
        h2 { "Surfaces" }
        @if o.surfaces.is_empty() {
            p.muted { "No chat surface is configured; the web and the API are always on." }
        } @else {
            table {
                tr { th { "Surface" } th { "State" } th { "Since" } th { "Last error" } }
                @for s in &o.surfaces {
                    tr {
                        td { (s.surface) }
                        @match &s.state {
                            SurfaceState::Starting => { td { "starting" } td { (ago(s.since_ms)) } td {} }
                            SurfaceState::Connected => { td { "connected" } td { (ago(s.since_ms)) } td {} }
                            SurfaceState::Down { error } => {
                                td.error { "down" } td { (ago(s.since_ms)) } td { (error) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Providers (this instance)" }
        table {
            tr {
                th { "Provider" } th.num { "Attempts" } th.num { "Error rate" }
                th.num { "First token p50" } th.num { "p95" } th { "Last error" }
            }
            @for p in &o.providers {
                tr {
                    td { (p.id) }
                    td.num { (p.health.attempts) }
                    td.num { (format!("{:.0} %", p.health.error_rate * 100.0)) }
                    td.num { (p.health.first_token_p50_ms.map_or("—".into(), |v| format!("{v} ms"))) }
                    td.num { (p.health.first_token_p95_ms.map_or("—".into(), |v| format!("{v} ms"))) }
                    td { (p.health.last_error.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    Ok(layout::page(
        &who,
        "/admin",
        "Overview",
        None,
        Some(10),
        body,
    ))
}
