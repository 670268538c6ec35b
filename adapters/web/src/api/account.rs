//! The account's own money and keys: usage and balance, API keys, link codes, and
//! the admin's grants.

use crate::extract::{ApiJson, Authed, WebSession};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// `GET /api/me/usage?days=N`: balance, and usage per day and per model.
pub async fn usage(
    State(state): State<AppState>,
    Authed(account): Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut days = 30;
    for (key, value) in query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        if key == "days" {
            days = value.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "days must be a whole number from 1 to 366",
                )
            })?;
        }
    }
    let report = state.core.usage(&account, days).await?;
    Ok(Json(json!(report)))
}

pub async fn list_keys(
    State(state): State<AppState>,
    WebSession(account): WebSession,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"api_keys": state.core.api_keys(&account).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["read".into(), "chat".into()]
}

/// `POST /api/keys`: the key itself is in this answer and nowhere else, ever.
pub async fn create_key(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (info, key) = state
        .core
        .create_api_key(&account, &req.name, &req.scopes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": info, "key": key})),
    ))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.revoke_api_key(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/link-codes`: a code to redeem from another identity.
pub async fn issue_link_code(
    State(state): State<AppState>,
    WebSession(account): WebSession,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let issued = state.core.issue_link_code(&account).await?;
    Ok((StatusCode::CREATED, Json(json!(issued))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    code: String,
}

/// `POST /api/link-codes/redeem`: joins this session's account to the account that
/// issued the code (merging it in). This session ends with it: the account it
/// belonged to is a tombstone now, so the client logs in again.
pub async fn redeem_link_code(
    State(state): State<AppState>,
    WebSession(account): WebSession,
    ApiJson(req): ApiJson<Redeem>,
) -> Result<Json<Value>, ApiError> {
    let outcome = state
        .core
        .redeem_link_code(&chorus_core::Identity::web(&account.name), &req.code)
        .await?;
    Ok(Json(json!(outcome)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The account's name.
    account: String,
    /// Credits; negative to deduct.
    amount: f64,
    note: Option<String>,
}

/// `POST /api/admin/grants` (admins only).
pub async fn grant(
    State(state): State<AppState>,
    Authed(admin): Authed,
    ApiJson(req): ApiJson<Grant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let admin = state.core.admin(&admin)?;
    let account_id = state
        .core
        .account_by_name(&req.account)
        .await?
        .ok_or(chorus_core::CoreError::NotFound("account"))?
        .id;
    let balance = state
        .core
        .grant_credits(&admin, &account_id, req.amount, req.note.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "account_id": account_id,
            "balance": chorus_core::quota::micros_to_credits(balance),
            "balance_micros": balance,
        })),
    ))
}
