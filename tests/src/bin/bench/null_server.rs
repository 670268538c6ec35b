//! `bench --floor`: a server that answers the benchmark's requests with no work at
//! all — no account, no database, no journal, no provider — on the same schedule of
//! tokens. The same clients against it measure what this machine, its loopback and
//! the clients themselves cost, the floor under every figure of Chorus's.

use anyhow::Result;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Serves on `port` until killed: conversations and messages answered with fresh
/// ids, and each run's events `tokens` deltas, token k due `k * interval` after its
/// stream opened, then `finished`.
pub async fn serve(port: u16, tokens: usize, interval: Duration) -> Result<()> {
    let ids = Arc::new(AtomicU64::new(0));
    let next = move || ids.fetch_add(1, Ordering::Relaxed);
    let conversation_ids = next.clone();
    let app =
        Router::new()
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/api/conversations",
                post(move || async move {
                    axum::Json(json!({ "id": format!("c{}", conversation_ids()) }))
                }),
            )
            .route(
                "/api/conversations/{id}/messages",
                post(
                    move || async move { axum::Json(json!({ "run_id": format!("r{}", next()) })) },
                ),
            )
            .route(
                "/api/runs/{id}/events",
                get(move || async move { events(tokens, interval) }),
            );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // As Chorus does (`chorus_web::serve`).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

fn events(tokens: usize, interval: Duration) -> Response {
    let start = tokio::time::Instant::now();
    let stream = futures::stream::unfold(0usize, move |k| async move {
        let frame = if k < tokens {
            tokio::time::sleep_until(start + interval * k as u32).await;
            format!(
                "id: {}\nevent: delta\ndata: {{\"text\":\"word{k} \"}}\n\n",
                k + 1
            )
        } else if k == tokens {
            format!(
                "id: {}\nevent: finished\ndata: {{\"status\":\"complete\"}}\n\n",
                k + 1
            )
        } else {
            return None;
        };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(frame)), k + 1))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}
