//! Conversations and sending messages.

use crate::extract::{ApiJson, Authed, parse_id};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chorus_model::ids::{ConversationId, MessageId};
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn list(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<Value>, ApiError> {
    let conversations = state.core.list_conversations(&account).await?;
    Ok(Json(json!({"conversations": conversations})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    title: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Authed(account): Authed,
    ApiJson(req): ApiJson<CreateConversation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let conversation = state
        .core
        .create_conversation(
            &account,
            req.title.as_deref(),
            req.model.as_deref(),
            req.system_prompt.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(conversation))))
}

pub async fn get(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    Ok(Json(json!(state.core.conversation(&account, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConversation {
    title: String,
}

pub async fn rename(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameConversation>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    state
        .core
        .rename_conversation(&account, &id, &req.title)
        .await?;
    Ok(Json(json!(
        state.core.conversation(&account, &id).await?.conversation
    )))
}

pub async fn delete(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    state.core.delete_conversation(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    content: String,
    parent_id: Option<String>,
    model: Option<String>,
}

pub async fn send(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let parent = req
        .parent_id
        .as_deref()
        .map(|p| parse_id(p, MessageId::parse, "parent message"))
        .transpose()?;
    let sent = state
        .core
        .send_message(
            &account,
            &id,
            &req.content,
            parent.as_ref(),
            req.model.as_deref(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(sent))))
}
