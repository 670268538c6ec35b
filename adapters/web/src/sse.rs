//! A run's journal as server-sent events: `event:` is the event kind, `id:` its seq
//! (so a browser's `Last-Event-ID` resumes it), `data:` the event's fields as JSON.

use crate::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chorus_core::journal::EntryStream;
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// Where a reader resumes: `Last-Event-ID` (set by browsers on reconnect) wins over
/// `?after=SEQ`; neither means from the start.
pub struct Resume {
    pub after: u64,
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Resume {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bad = |what: &str, v: &str| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{what} must be a non-negative integer sequence number, got {v:?}"),
            )
        };
        if let Some(v) = parts.headers.get("last-event-id") {
            let v = v.to_str().unwrap_or_default().trim();
            return v
                .parse()
                .map(|after| Resume { after })
                .map_err(|_| bad("Last-Event-ID", v));
        }
        let Query(q) = Query::<AfterQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_request",
                    e.body_text(),
                )
            })?;
        match q.after {
            Some(v) => v
                .trim()
                .parse()
                .map(|after| Resume { after })
                .map_err(|_| bad("after", &v)),
            None => Ok(Resume { after: 0 }),
        }
    }
}

/// The SSE response for a run's entries; it ends after `finished`. It holds `slot`
/// (one of the account's capped streams) until it ends or the client goes.
pub fn run_events(
    entries: EntryStream,
    shutdown: tokio_util::sync::CancellationToken,
    slot: crate::guard::StreamSlot,
) -> Response {
    let events = entries
        .take_until(shutdown.cancelled_owned())
        .map(move |item| {
            let _held = &slot;
            let event = match item {
                Ok(entry) => Event::default()
                    .event(entry.event.kind())
                    .id(entry.seq.to_string())
                    .data(serde_json::to_string(&entry.event).unwrap_or_else(|_| "{}".into())),
                Err(e) => {
                    tracing::warn!(error = %e, "run stream failed");
                    Event::default().event("journal_error").data(
                    serde_json::json!({"message": "the run's journal is unavailable; reconnect"})
                        .to_string(),
                )
                }
            };
            Ok::<_, Infallible>(event)
        });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
