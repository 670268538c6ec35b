//! A fake OpenAI Responses API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/responses` in the documented streaming format: typed
//! server-sent events (`event: TYPE` and `data: {"type": TYPE, "sequence_number": N,
//! ...}`) in the order OpenAI sends them for a text reply: `response.created`,
//! `response.in_progress`, `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`..., `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, and
//! `response.completed` with the usage. There is no `[DONE]`. It records every
//! request's headers and JSON body.
//!
//! The replies are the fixtures of `tests/fixtures/openai_responses/`, chosen per
//! request by a marker in the last user input item:
//!
//! | marker              | fixture                                                       |
//! |---------------------|---------------------------------------------------------------|
//! | (none)              | `reply`: [`NORMAL_CHUNKS`], `response.completed` with usage   |
//! | `[tool-calls]`      | `tool_calls`: two `function_call` items, arguments in deltas  |
//! | `[content-filter]`  | `content_filter`: text, then `response.incomplete` (reason `content_filter`) |
//! | `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], then an `error` event |
//! | `[failed]`          | `failed`: [`MIDSTREAM_CHUNKS`], then `response.failed`        |
//! | `[rate-limit-once]` | `rate_limit` (429, `Retry-After: 1`) the first time, then `reply` |
//! | `[rate-limit]`      | `rate_limit_long_wait`: 429 with `Retry-After: 7`             |
//! | `[unauthorized]`    | `unauthorized`: 401 with OpenAI's invalid-key body            |
//!
//! A request whose second-to-last input item is the assistant text of a mid-stream
//! failure (a continuation of it) gets `continuation` ([`CONTINUATION_CHUNKS`]); one
//! whose last input item is a `function_call_output`, `reply`.

use crate::fake_server::{FakeProvider, FakeServer, FirstTime, Recorder};
use crate::fixture::replay;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " responses", " fake", "."];
/// `(input_tokens, output_tokens)` of the normal reply.
pub const NORMAL_USAGE: (u64, u64) = (31, 7);
pub const MIDSTREAM_CHUNKS: &[&str] = &["The answer", " is", " forty"];
pub const CONTINUATION_CHUNKS: &[&str] = &["-two", ", as", " always."];
pub const CONTINUATION_USAGE: (u64, u64) = (64, 4);
/// The message of the `error` event of `[midstream-error]`.
pub const MIDSTREAM_ERROR_MESSAGE: &str = "The server had an error while processing your request.";
/// The message of the `response.failed` event of `[failed]`.
pub const FAILED_MESSAGE: &str = "The model failed to generate a response.";
pub const RATE_LIMIT_MESSAGE: &str = "Rate limit reached for gpt-5-mini";

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    MidstreamError,
    Failed,
    RateLimited,
    /// `[rate-limit-once]` the first time: 429 with `Retry-After: 1`.
    RateLimitedOnce,
    Continuation,
    ToolCalls,
    ContentFilter,
    Unauthorized,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
}

impl RecordedRequest {
    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    /// `(role, content)` of every message item of `input` (function call items are
    /// left out).
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["input"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i.get("role").is_some())
                    .map(|m| {
                        (
                            m["role"].as_str().unwrap_or_default().to_string(),
                            m["content"].as_str().unwrap_or_default().to_string(),
                        )
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
pub struct FakeOpenAiResponses {
    server: FakeServer,
    state: FakeState,
}

impl FakeOpenAiResponses {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1/responses", post(responses))
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.server.url("/v1")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

impl FakeProvider for FakeOpenAiResponses {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    let input = body["input"].as_array().cloned().unwrap_or_default();
    if input
        .last()
        .is_some_and(|i| i["type"] == "function_call_output")
    {
        return Behaviour::Normal;
    }
    let last_user = input
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let markers = [
        ("[midstream-error]", Behaviour::MidstreamError),
        ("[failed]", Behaviour::Failed),
        ("[rate-limit]", Behaviour::RateLimited),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[content-filter]", Behaviour::ContentFilter),
        ("[unauthorized]", Behaviour::Unauthorized),
    ];
    if let Some((_, b)) = markers.iter().find(|(m, _)| last_user.contains(m)) {
        return *b;
    }
    if last_user.contains("[rate-limit-once]") && rate_limited.first() {
        return Behaviour::RateLimitedOnce;
    }
    let partial = MIDSTREAM_CHUNKS.concat();
    let continues_partial = input.len() >= 2
        && input[input.len() - 2]["role"] == "assistant"
        && input[input.len() - 2]["content"] == partial.as_str();
    if continues_partial {
        Behaviour::Continuation
    } else {
        Behaviour::Normal
    }
}

async fn responses(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": format!("invalid JSON: {e}"), "type": "invalid_request_error"}})),
            )
                .into_response();
        }
    };
    let behaviour = choose(&body, &state.rate_limited);
    state.requests.push(RecordedRequest {
        headers,
        body: body.clone(),
        behaviour,
    });
    let fixture = match behaviour {
        Behaviour::Normal => "reply",
        Behaviour::Continuation => "continuation",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::Failed => "failed",
        Behaviour::RateLimited => "rate_limit_long_wait",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::ContentFilter => "content_filter",
        Behaviour::Unauthorized => "unauthorized",
    };
    replay("openai_responses", fixture, None)
}
