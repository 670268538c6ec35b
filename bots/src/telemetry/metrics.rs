//! `GET /metrics`: the Prometheus text rendering of everything core recorded, served
//! on a listener of its own (`telemetry.metrics_listen`) and/or at a path of the main
//! listener (`telemetry.metrics_path`), behind an optional bearer token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chorus_core::Core;
use chorus_model::secret::Secret;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often histograms are folded together between scrapes (keeps memory flat
/// however rarely Prometheus scrapes).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

struct Scrape {
    core: Core,
    handle: PrometheusHandle,
    token: Option<Secret>,
}

/// The metrics route at `path`.
pub fn router(
    core: Core,
    handle: PrometheusHandle,
    token: Option<Secret>,
    path: &str,
) -> axum::Router {
    let state = Arc::new(Scrape {
        core,
        handle,
        token,
    });
    axum::Router::new()
        .route(path, axum::routing::get(scrape))
        .with_state(state)
}

async fn scrape(State(scrape): State<Arc<Scrape>>, headers: HeaderMap) -> Response {
    if let Some(token) = &scrape.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let expected = token.expose().as_bytes();
        let ok = sent.is_some_and(|sent| {
            // Compared in time independent of where they differ.
            let sent = sent.as_bytes();
            sent.len() == expected.len()
                && sent
                    .iter()
                    .zip(expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need Authorization: Bearer <telemetry.metrics_token>\n",
            )
                .into_response();
        }
    }
    scrape.core.sample_metrics().await;
    scrape.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
        .into_response()
}

/// Folds histograms every [`UPKEEP_INTERVAL`] until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}
