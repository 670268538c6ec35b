//! Providers and models: each provider's health over every instance (attempts, error
//! rate, time to first token, last error) with each instance's own figures, every
//! model's price and every alias's fallback chain.

use super::format::{maybe_ago, maybe_ms, percent};
use super::layout;
use crate::access::PageAdmin;
use crate::refusal::PageError;
use axum::extract::State;
use axum::response::Response;
use chorus_core::ProviderSummary;
use chorus_web::AppState;
use maud::{Markup, html};

pub async fn page(State(state): State<AppState>, who: PageAdmin) -> Result<Response, PageError> {
    let p = state.core.providers_page(&who.admin).await?;
    let body = html! {
        p.muted {
            "Each instance publishes its last 100 attempts per provider every few seconds; "
            "instances silent for 5 minutes are left out. The median time to first token "
            "is the instances' medians weighted by their successful attempts, the 95th "
            "percentile the highest of theirs."
        }
        h2 { "Health" }
        (health_table(&p.providers))
        h2 { "Per instance" }
        table #provider-instances {
            tr {
                th { "Provider" } th { "Instance" } th.num { "Attempts" } th.num { "Error rate" }
                th.num { "First token p50" } th.num { "p95" } th { "Last error" } th { "Published" }
            }
            @for s in p.providers.iter().flat_map(|p| &p.instances) {
                tr {
                    td { (s.provider) } td { code { (s.instance_id) } }
                    td.num { (s.attempts) }
                    td.num { (percent(if s.attempts == 0 { 0.0 } else { s.failures as f64 / s.attempts as f64 })) }
                    td.num { (maybe_ms(s.first_token_p50_ms)) }
                    td.num { (maybe_ms(s.first_token_p95_ms)) }
                    td { (s.last_error.as_deref().unwrap_or("")) }
                    td { (maybe_ago(Some(s.updated_at))) }
                }
            }
        }
        h2 { "Models and prices" }
        p.muted { "Credits per million tokens; the default model is " code { (p.default_model) } "." }
        table #models {
            tr { th { "Model" } th.num { "Prompt" } th.num { "Cached prompt" } th.num { "Completion" } th { "Fallback chain" } }
            @for m in &p.models {
                tr {
                    td { code { (m.id) } }
                    td.num { (m.prompt_price) }
                    td.num { (m.cached_prompt_price) }
                    td.num { (m.completion_price) }
                    td { @if m.fallbacks.is_empty() { span.muted { "—" } } @else { (m.fallbacks.join(" → ")) } }
                }
            }
        }
    };
    Ok(layout::page(
        &who,
        "/admin/providers",
        "Providers and models",
        None,
        Some(10),
        body,
    ))
}

/// One row per provider: its figures over every instance.
pub fn health_table(providers: &[ProviderSummary]) -> Markup {
    html! {
        table #providers {
            tr {
                th { "Provider" } th { "Kind" } th.num { "Instances" } th.num { "Attempts" } th.num { "Error rate" }
                th.num { "First token p50" } th.num { "p95" } th { "Last error" }
            }
            @for p in providers {
                tr data-provider=(p.id) {
                    td { (p.id) }
                    td { (format!("{:?}", p.kind).to_lowercase()) }
                    td.num { (p.instances.len()) }
                    td.num { (p.attempts) }
                    td class=(if p.error_rate > 0.0 { "num error" } else { "num" }) { (percent(p.error_rate)) }
                    td.num { (maybe_ms(p.first_token_p50_ms)) }
                    td.num { (maybe_ms(p.first_token_p95_ms)) }
                    td { (p.last_error.as_deref().unwrap_or("")) " " span.muted { (p.last_error_at.map(|t| maybe_ago(Some(t))).unwrap_or_default()) } }
                }
            }
        }
    }
}
