//! A fake Google Gemini API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` in the
//! documented streaming wire format: `data: {GenerateContentResponse}` events, with
//! text in `candidates[0].content.parts[]` (thought summaries marked `thought: true`),
//! the running `usageMetadata` in every chunk, `finishReason` in the last one, and no
//! end marker: the stream just ends. It records every request's path, query, headers
//! and JSON body.
//!
//! The replies are the fixtures of `tests/fixtures/gemini/`, chosen by a marker in the
//! text of the last `user` turn:
//!
//! | marker             | fixture                                                        |
//! |--------------------|----------------------------------------------------------------|
//! | (none)             | `reply`: a thought, [`NORMAL_CHUNKS`], `STOP`, [`NORMAL_USAGE`] |
//! | `[tool-calls]`     | `tool_calls`: text, then two `functionCall` parts              |
//! | `[safety]`, `[content-filter]` | `content_filter`: [`SAFETY_CHUNKS`], then `finishReason: "SAFETY"` |
//! | `[blocked-prompt]` | `blocked_prompt`: `promptFeedback.blockReason: "SAFETY"`, no candidates |
//! | `[midstream-error]` | `midstream_error`: text, then an `error` chunk                |
//! | `[rate-limit-once]` | `rate_limit` (429 whose `RetryInfo` says `retryDelay: "1s"`) the first time, then `reply` |
//! | `[rate-limit]`     | `rate_limit_long_wait`: 429 `RESOURCE_EXHAUSTED`, no delay     |
//! | `[unauthorized]`   | `unauthorized`: 400 `INVALID_ARGUMENT` / `API_KEY_INVALID`     |
//!
//! A request whose last turn carries `functionResponse` parts gets `reply`.

use crate::fake_server::{FakeProvider, FakeServer, FirstTime, Recorder};
use crate::fixture::replay;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

pub const THOUGHT: &str = "The user wants a greeting.";
pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " Gemini", "."];
/// `(promptTokenCount, candidatesTokenCount, thoughtsTokenCount)` of the normal reply.
pub const NORMAL_USAGE: (u64, u64, u64) = (31, 6, 12);
pub const SAFETY_CHUNKS: &[&str] = &["Here is how", " one would"];
pub const RATE_LIMIT_MESSAGE: &str =
    "You exceeded your current quota, please check your plan and billing details.";

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Safety,
    BlockedPrompt,
    RateLimited,
    /// `[rate-limit-once]` the first time: 429 with a one-second `retryDelay`.
    RateLimitedOnce,
    ToolCalls,
    MidstreamError,
    Unauthorized,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The last path segment: `{model}:streamGenerateContent`.
    pub model_and_method: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
}

impl RecordedRequest {
    pub fn api_key(&self) -> Option<&str> {
        self.headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
    }

    /// `(role, text of all parts joined)` of every turn in `contents`.
    pub fn turns(&self) -> Vec<(String, String)> {
        self.body["contents"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let text: String = c["parts"]
                            .as_array()
                            .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
                            .unwrap_or_default();
                        (c["role"].as_str().unwrap_or_default().to_string(), text)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct FakeState {
    requests: Recorder<RecordedRequest>,
    rate_limited: FirstTime,
}

/// The running fake. Stops when dropped.
pub struct FakeGemini {
    server: FakeServer,
    state: FakeState,
}

impl FakeGemini {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1beta/models/{model_and_method}", post(generate))
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT` (the API adds `/v1beta`).
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

impl FakeProvider for FakeGemini {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let answers_calls = contents
        .last()
        .and_then(|c| c["parts"].as_array())
        .is_some_and(|ps| ps.iter().any(|p| p.get("functionResponse").is_some()));
    if answers_calls {
        return Behaviour::Normal;
    }
    let last_user: String = contents
        .iter()
        .rev()
        .find(|c| c["role"] == "user")
        .and_then(|c| c["parts"].as_array())
        .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default();
    let markers = [
        ("[safety]", Behaviour::Safety),
        ("[content-filter]", Behaviour::Safety),
        ("[blocked-prompt]", Behaviour::BlockedPrompt),
        ("[rate-limit]", Behaviour::RateLimited),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[midstream-error]", Behaviour::MidstreamError),
        ("[unauthorized]", Behaviour::Unauthorized),
    ];
    if let Some((_, b)) = markers.iter().find(|(m, _)| last_user.contains(m)) {
        *b
    } else if last_user.contains("[rate-limit-once]") && rate_limited.first() {
        Behaviour::RateLimitedOnce
    } else {
        Behaviour::Normal
    }
}

fn error_response(status: StatusCode, api_status: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": api_status,
        }})),
    )
        .into_response()
}

async fn generate(
    State(state): State<FakeState>,
    Path(model_and_method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !model_and_method.ends_with(":streamGenerateContent") {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("unknown method in {model_and_method:?}"),
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. {e}"),
            );
        }
    };
    let behaviour = choose(&body, &state.rate_limited);
    state.requests.push(RecordedRequest {
        model_and_method: model_and_method.clone(),
        query: query.clone(),
        headers,
        body: body.clone(),
        behaviour,
    });
    if query.as_deref() != Some("alt=sse") {
        // Without alt=sse the API streams a JSON array, which is not what Chorus reads.
        return error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "this fake only speaks alt=sse",
        );
    }
    let fixture = match behaviour {
        Behaviour::Normal => "reply",
        Behaviour::Safety => "content_filter",
        Behaviour::BlockedPrompt => "blocked_prompt",
        Behaviour::RateLimited => "rate_limit_long_wait",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::Unauthorized => "unauthorized",
    };
    replay("gemini", fixture, None)
}
