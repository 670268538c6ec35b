//! Files of a conversation's sandbox workspace (what `code_interpreter` executions
//! wrote to /mnt/data), for their owner only: another account gets 404.

use crate::extract::{Authed, parse_id};
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chorus_model::ids::ConversationId;
use serde_json::{Value, json};

pub async fn list(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let files = state.core.conversation_files(&account, &id).await?;
    Ok(Json(json!({ "files": files })))
}

pub async fn download(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let (file, size) = state.core.conversation_file(&account, &id, &path).await?;
    let name = path.rsplit('/').next().unwrap_or("file");
    // Quotes and control characters cannot break out of the header value.
    let safe_name: String = name
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response())
}
