//! Overview: replies streaming now, replies and tokens per minute, the error rate,
//! spend today and this month, charts of the last hour, day and 30 days (one metric
//! at a time, chosen by a link), each surface's state on this instance and each
//! provider's health over every instance. Reloads every 10 s.

use super::chart::{self, Bar};
use super::format::{ago, credits, percent, utc_day, utc_time};
use super::{layout, providers};
use crate::access::PageAdmin;
use crate::refusal::PageError;
use axum::extract::{Query, State};
use axum::response::Response;
use chorus_core::{RunStatBucket, SurfaceState};
use chorus_web::AppState;
use maud::{Markup, html};
use serde::Deserialize;

/// What the charts show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    Replies,
    Tokens,
    Failed,
    Spend,
}

const METRICS: [(Metric, &str, &str); 4] = [
    (Metric::Replies, "replies", "Replies"),
    (Metric::Tokens, "tokens", "Tokens"),
    (Metric::Failed, "failed", "Failed replies"),
    (Metric::Spend, "spend", "Credits spent"),
];

impl Metric {
    fn parse(s: Option<&str>) -> Self {
        METRICS
            .iter()
            .find(|(_, name, _)| Some(*name) == s)
            .map_or(Metric::Replies, |(m, _, _)| *m)
    }

    fn of(self, b: &RunStatBucket) -> f64 {
        match self {
            Metric::Replies => b.replies as f64,
            Metric::Tokens => (b.prompt_tokens + b.completion_tokens) as f64,
            Metric::Failed => b.failed as f64,
            Metric::Spend => chorus_model::money::micros_to_credits(b.cost),
        }
    }

    fn label(self) -> &'static str {
        METRICS
            .iter()
            .find(|(m, _, _)| *m == self)
            .map_or("", |(_, _, l)| l)
    }
}

#[derive(Deserialize)]
pub struct OverviewQuery {
    metric: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    who: PageAdmin,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    let o = state.core.overview(&who.admin).await?;
    let a = &o.activity;
    let metric = Metric::parse(q.metric.as_deref());
    let body = html! {
        div.cards {
            div.card { div.muted { "Streaming now" } div.value #streaming-now { (o.streaming_now) } }
            div.card { div.muted { "Replies per minute" } div.value #replies-per-minute { (chart::count((a.replies_per_minute * 10.0).round() / 10.0)) } }
            div.card { div.muted { "Tokens per minute" } div.value #tokens-per-minute { (chart::count(a.tokens_per_minute.round())) } }
            div.card { div.muted { "Error rate (last hour)" } div.value #error-rate { (percent(a.error_rate_hour)) } }
            div.card { div.muted { "Spend today (UTC)" } div.value #spend-today { (credits(o.spend_today)) } }
            div.card { div.muted { "Spend this month" } div.value #spend-month { (credits(o.spend_month)) } }
        }
        p.muted { "Every instance's replies, counted when they end; per-minute rates over the last 5 minutes." }
        h2 { "Activity" }
        p.metrics {
            "Show: "
            @for (m, name, label) in METRICS {
                @if m == metric { strong { (label) } } @else { a href=(format!("/admin?metric={name}")) { (label) } }
                " "
            }
        }
        div.charts {
            (series("chart-hour", &format!("{} per minute, last hour (UTC)", metric.label()), &a.last_hour, metric, utc_time))
            (series("chart-day", &format!("{} per hour, last 24 hours (UTC)", metric.label()), &a.last_day, metric, utc_time))
            (series("chart-month", &format!("{} per day, last 30 days (UTC)", metric.label()), &a.last_30_days, metric, utc_day))
        }
        h2 { "Surfaces (this instance)" }
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
        h2 { "Providers (every instance)" }
        (providers::health_table(&o.providers))
        p { a href="/admin/providers" { "Providers and models: per instance, fallback chains, prices" } }
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

/// One chart of `metric` over `buckets`, labelled by `when`.
fn series(
    id: &str,
    title: &str,
    buckets: &[RunStatBucket],
    metric: Metric,
    when: fn(i64) -> String,
) -> Markup {
    let bars: Vec<Bar> = buckets
        .iter()
        .map(|b| Bar {
            value: metric.of(b),
            title: format!(
                "{}: {} replies ({} failed), {} tokens, {} credits",
                when(b.start),
                b.replies,
                b.failed,
                b.prompt_tokens + b.completion_tokens,
                credits(b.cost)
            ),
        })
        .collect();
    let first = buckets.first().map(|b| when(b.start)).unwrap_or_default();
    let last = buckets.last().map(|b| when(b.start)).unwrap_or_default();
    chart::bars(id, title, &bars, &first, &last, chart::count)
}
