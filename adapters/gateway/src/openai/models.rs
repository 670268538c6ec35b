//! `GET /v1/models` and `GET /v1/models/{id}`: every Chorus model and alias the key's
//! account may use (its role's, by the access policy), so a client may name an alias
//! and get its fallbacks. A model it may not use is not found, as OpenAI answers.

use super::OpenAiError;
use crate::error::{ErrorKind, GatewayError};
use crate::{GatewayState, auth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

fn model_json(id: &str, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

pub async fn list(
    State(state): State<GatewayState>,
    headers: HeaderMap,
) -> Result<Json<Value>, OpenAiError> {
    let account = auth::account(&state.core, &headers).await?;
    let models = state
        .core
        .models_for(&account)
        .await
        .map_err(GatewayError::from)?;
    let data: Vec<Value> = models
        .iter()
        .map(|m| model_json(&m.id, &m.provider))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn get(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let account = auth::account(&state.core, &headers).await?;
    state
        .core
        .models_for(&account)
        .await
        .map_err(GatewayError::from)?
        .iter()
        .find(|m| m.id == id)
        .map(|m| Json(model_json(&m.id, &m.provider)))
        .ok_or_else(|| {
            OpenAiError(GatewayError {
                param: Some("model"),
                ..GatewayError::new(
                    ErrorKind::NotFound,
                    format!("the model `{id}` does not exist on this Chorus"),
                )
            })
        })
}
