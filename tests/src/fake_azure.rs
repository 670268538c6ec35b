//! A fake Azure OpenAI server on `127.0.0.1:0`.
//!
//! It serves Chat Completions per deployment, as Azure does:
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=V`, with the key
//! in an `api-key` header. A request with an unknown deployment, another `api-version`
//! or a wrong key gets Azure's 404 / 400 / 401 error, so a wrong URL or auth scheme
//! fails the test with a message saying which.
//!
//! The stream is the OpenAI chunk format with Azure's additions: a first chunk with
//! empty `choices` and `prompt_filter_results`, and `content_filter_results` on every
//! choice. The replies are the fixtures of `tests/fixtures/azure/`, chosen by a marker
//! in the last user message:
//!
//! | marker                  | fixture                                                    |
//! |-------------------------|------------------------------------------------------------|
//! | (none)                  | `reply`: [`NORMAL_CHUNKS`], `stop`, usage [`NORMAL_USAGE`] |
//! | `[tool-calls]`          | `tool_calls`: two parallel calls                           |
//! | `[blocked-prompt]`      | `blocked_prompt`: 400 `content_filter` ([`PROMPT_FILTER_MESSAGE`]) |
//! | `[filtered-completion]`, `[content-filter]` | `content_filter`: [`FILTERED_CHUNKS`], then `finish_reason: content_filter` |
//! | `[midstream-error]`     | `midstream_error`: text, then an `error` event             |
//! | `[rate-limit-once]`     | `rate_limit` (429, `retry-after: 1`) the first time, then `reply` |
//! | `[unauthorized]`        | `unauthorized`: Azure's 401                                |

use crate::fake_server::{FakeProvider, FakeServer, FirstTime, Recorder};
use crate::fixture::replay;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " Azure", "."];
pub const NORMAL_USAGE: (u64, u64) = (19, 4);
pub const FILTERED_CHUNKS: &[&str] = &["Once upon", " a time"];
pub const FILTERED_USAGE: (u64, u64) = (12, 3);
/// Exactly what Azure says when its filter rejects a prompt.
pub const PROMPT_FILTER_MESSAGE: &str = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    BlockedPrompt,
    FilteredCompletion,
    ToolCalls,
    MidstreamError,
    /// `[rate-limit-once]` the first time: 429 with `retry-after: 1`.
    RateLimitedOnce,
    Unauthorized,
    /// The URL, `api-version` or key was wrong: answered with Azure's error.
    Rejected,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub deployment: String,
    pub api_version: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
}

impl RecordedRequest {
    /// The `api-key` header.
    pub fn api_key(&self) -> Option<&str> {
        self.headers.get("api-key").and_then(|v| v.to_str().ok())
    }

    /// The `Authorization` header (Azure key auth sends none).
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct FakeState {
    deployments: Vec<String>,
    api_version: String,
    api_key: String,
    requests: Recorder<RecordedRequest>,
    rate_limited: FirstTime,
}

/// The running fake. Stops when dropped.
pub struct FakeAzure {
    server: FakeServer,
    state: FakeState,
}

impl FakeAzure {
    /// A resource serving `deployments`, accepting only `api_version` and `api_key`.
    pub async fn start(
        deployments: &[&str],
        api_version: &str,
        api_key: &str,
    ) -> anyhow::Result<Self> {
        let state = FakeState {
            deployments: deployments.iter().map(|d| d.to_string()).collect(),
            api_version: api_version.to_string(),
            api_key: api_key.to_string(),
            requests: Recorder::default(),
            rate_limited: FirstTime::default(),
        };
        let app = Router::new()
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(completions),
            )
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: the resource endpoint, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

impl FakeProvider for FakeAzure {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

fn azure_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn completions(
    State(state): State<FakeState>,
    Path(deployment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let api_version = query.get("api-version").cloned();
    let key = headers.get("api-key").and_then(|v| v.to_str().ok());
    let rejection = if key != Some(state.api_key.as_str()) {
        Some(azure_error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ))
    } else if api_version.as_deref() != Some(state.api_version.as_str()) {
        Some(azure_error(
            StatusCode::NOT_FOUND,
            "404",
            &format!(
                "fake Azure: api-version {api_version:?} where {:?} was expected",
                state.api_version
            ),
        ))
    } else if !state.deployments.contains(&deployment) {
        Some(azure_error(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            &format!("The API deployment for this resource does not exist: {deployment:?}"),
        ))
    } else {
        None
    };
    let last_user = body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let after_tool_result = body["messages"]
        .as_array()
        .and_then(|ms| ms.last())
        .is_some_and(|m| m["role"] == "tool");
    let markers = [
        ("[blocked-prompt]", Behaviour::BlockedPrompt),
        ("[filtered-completion]", Behaviour::FilteredCompletion),
        ("[content-filter]", Behaviour::FilteredCompletion),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[midstream-error]", Behaviour::MidstreamError),
        ("[unauthorized]", Behaviour::Unauthorized),
    ];
    let behaviour = if rejection.is_some() {
        Behaviour::Rejected
    } else if after_tool_result {
        Behaviour::Normal
    } else if let Some((_, b)) = markers.iter().find(|(m, _)| last_user.contains(m)) {
        *b
    } else if last_user.contains("[rate-limit-once]") && state.rate_limited.first() {
        Behaviour::RateLimitedOnce
    } else {
        Behaviour::Normal
    };
    state.requests.push(RecordedRequest {
        deployment: deployment.clone(),
        api_version,
        headers,
        body,
        behaviour,
    });
    if let Some(response) = rejection {
        return response;
    }
    let fixture = match behaviour {
        Behaviour::Rejected => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Behaviour::Normal => "reply",
        Behaviour::BlockedPrompt => "blocked_prompt",
        Behaviour::FilteredCompletion => "content_filter",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::Unauthorized => "unauthorized",
    };
    replay("azure", fixture, None)
}
