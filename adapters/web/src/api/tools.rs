//! Tools: what the caller may use, a conversation's tool selection, and the tool
//! servers' status for admins.

use crate::extract::{ApiJson, Authed, parse_id};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use chorus_model::ids::ConversationId;
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn list(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "tools": state.core.tools_for(&account).await? }),
    ))
}

pub async fn servers(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "servers": state.core.tool_sources(&state.core.admin(&account)?) }),
    ))
}

pub async fn conversation_tools(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let tools = state.core.conversation_tools(&account, &id).await?;
    Ok(Json(json!({ "tools": tools })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTools {
    tools: Vec<String>,
}

pub async fn set_conversation_tools(
    State(state): State<AppState>,
    Authed(account): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetTools>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let tools = state
        .core
        .set_conversation_tools(&account, &id, req.tools)
        .await?;
    Ok(Json(json!({ "tools": tools })))
}

pub async fn resources(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "resources": state.core.mcp_resources(&account).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadResource {
    server: String,
    uri: String,
}

pub async fn read_resource(
    State(state): State<AppState>,
    Authed(account): Authed,
    ApiJson(req): ApiJson<ReadResource>,
) -> Result<Json<Value>, ApiError> {
    let text = state
        .core
        .read_mcp_resource(&account, &req.server, &req.uri)
        .await?;
    Ok(Json(
        json!({ "server": req.server, "uri": req.uri, "text": text }),
    ))
}

pub async fn prompts(
    State(state): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "prompts": state.core.mcp_prompts(&account).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetPrompt {
    server: String,
    name: String,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

pub async fn get_prompt(
    State(state): State<AppState>,
    Authed(account): Authed,
    ApiJson(req): ApiJson<GetPrompt>,
) -> Result<Json<Value>, ApiError> {
    let messages = state
        .core
        .get_mcp_prompt(&account, &req.server, &req.name, req.arguments)
        .await?;
    Ok(Json(json!({ "messages": messages })))
}
