//! Runs: their state, their event stream, stop and continue.

use crate::extract::{Authed, parse_id};
use crate::sse::{Resume, run_events};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chorus_model::ids::RunId;
use serde_json::{Value, json};

pub async fn get(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, RunId::parse, "run")?;
    Ok(Json(json!(state.core.run_view(&account, &id).await?)))
}

pub async fn events(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
    resume: Resume,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, RunId::parse, "run")?;
    let max = state.core.config().server.max_streams_per_account;
    let slot = state.streams.take(&account.id, max)?;
    let entries = state.core.follow_run(&account, &id, resume.after).await?;
    Ok(run_events(entries, state.shutdown.clone(), slot))
}

pub async fn stop(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id, RunId::parse, "run")?;
    let run = state.core.stop_run(&account, &id).await?;
    let requested = run.status.is_active();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": run.id, "status": run.status, "stop_requested": requested})),
    ))
}

pub async fn continue_run(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id, RunId::parse, "run")?;
    let run_id = state.core.continue_run(&account, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"run_id": run_id}))))
}
