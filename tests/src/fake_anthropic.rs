//! A fake Anthropic Messages API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/messages` in the documented streaming wire format: named
//! server-sent events (`event: NAME` + `data: JSON`) `message_start` (with the input
//! usage), `content_block_start`, `ping`, `content_block_delta`s, `content_block_stop`,
//! `message_delta` (stop reason, output usage) and `message_stop`. It records every
//! request's headers and JSON body, and whether the client hung up before the reply
//! ended.
//!
//! Like the real API, it refuses (with Anthropic's error body) a request without
//! `x-api-key` (401) or `anthropic-version`, without an integer `max_tokens`, with a
//! `system` role in `messages`, with an empty message, or whose final assistant
//! message ends in whitespace (400).
//!
//! The replies are the fixtures of `tests/fixtures/anthropic/`, chosen per request by
//! a marker in the last user message:
//!
//! | marker              | fixture                                                          |
//! |---------------------|------------------------------------------------------------------|
//! | (none)              | `reply`: [`NORMAL_CHUNKS`] with [`NORMAL_USAGE`]                 |
//! | `[think]`           | `thinking`: [`THINKING_CHUNKS`], then [`THINKING_ANSWER`]        |
//! | `[tool-calls]`      | `tool_calls`: text, then two `tool_use` blocks (`input_json_delta`) |
//! | `[content-filter]`  | `content_filter`: text, then `stop_reason: refusal`              |
//! | `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], an `overloaded_error`   |
//! | `[rate-limit-once]` | `rate_limit` (429, `retry-after: 1`) the first time, then `reply` |
//! | `[rate-limit]`      | `rate_limit_long_wait`: 429 with `retry-after: 3600`             |
//! | `[unauthorized]`    | `unauthorized`: 401 `authentication_error`                       |
//!
//! A request whose last message is the assistant prefill [`continuation_prefill`]
//! (the mid-stream partial, trailing whitespace trimmed) gets `continuation`
//! ([`CONTINUATION_CHUNKS`]); one whose last message carries tool results, `reply`.

use crate::fake_server::{
    FakeProvider, FakeServer, FirstTime, Recorder, hung_up, roles_and_contents,
};
use crate::fixture::replay;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Token counts as the API reports them.
#[derive(Clone, Copy, Debug)]
pub struct FakeUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl FakeUsage {
    /// All the prompt tokens: uncached, written to and read from the cache.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " Claude", "."];
pub const NORMAL_USAGE: FakeUsage = FakeUsage {
    input_tokens: 19,
    cache_creation_input_tokens: 2,
    cache_read_input_tokens: 4,
    output_tokens: 6,
};
pub const THINKING_CHUNKS: &[&str] = &["The user wants", " a greeting", " in French."];
pub const THINKING_ANSWER: &[&str] = &["Bonjour", " !"];
/// The partial reply ends in whitespace, which a prefill may not.
pub const MIDSTREAM_CHUNKS: &[&str] = &["The answer", " is", ":\n\n"];
/// Exactly what Anthropic sends in a mid-stream overload.
pub const MIDSTREAM_ERROR_TYPE: &str = "overloaded_error";
pub const MIDSTREAM_ERROR_MESSAGE: &str = "Overloaded";
/// The model repeats the whitespace the prefill lost, split over two deltas.
pub const CONTINUATION_CHUNKS: &[&str] = &["\n", "\nForty-two", ", as always."];
pub const CONTINUATION_USAGE: FakeUsage = FakeUsage {
    input_tokens: 41,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: 5,
};
pub const RATE_LIMIT_MESSAGE: &str =
    "Number of request tokens has exceeded your per-minute rate limit";
/// Longer than any retry wait Chorus accepts, so the run fails at once.
pub const RATE_LIMIT_RETRY_AFTER_SECS: u64 = 3600;

/// The assistant prefill a continuation of the mid-stream error must end with.
pub fn continuation_prefill() -> String {
    MIDSTREAM_CHUNKS.concat().trim_end().to_string()
}

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Thinking,
    MidstreamError,
    RateLimited,
    /// `[rate-limit-once]` the first time: 429 with `retry-after: 1`.
    RateLimitedOnce,
    Continuation,
    ToolCalls,
    ContentFilter,
    Unauthorized,
    /// Refused as the real API would (the reason is in the response).
    Rejected,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
    /// Set when the client closed the connection before the reply was complete.
    pub hung_up: Arc<AtomicBool>,
}

impl RecordedRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(role, content)` of every message of the request.
    pub fn messages(&self) -> Vec<(String, String)> {
        roles_and_contents(&self.body["messages"])
    }

    pub fn client_hung_up(&self) -> bool {
        hung_up(&self.hung_up)
    }
}

#[derive(Clone, Default)]
struct FakeState {
    requests: Recorder<RecordedRequest>,
    rate_limited: FirstTime,
}

/// The running fake. Stops when dropped.
pub struct FakeAnthropic {
    server: FakeServer,
    state: FakeState,
}

impl FakeAnthropic {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT` (like the real API's, without `/v1`).
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

impl FakeProvider for FakeAnthropic {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

/// Anthropic's error body.
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_fake",
        })),
    )
        .into_response()
}

/// Why the real API would refuse the request, if it would.
fn refusal(headers: &HeaderMap, body: &Value) -> Option<Response> {
    let invalid = |message: &str| {
        Some(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
        ))
    };
    if headers.get("x-api-key").is_none() {
        return Some(api_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if headers.get("anthropic-version").is_none() {
        return invalid("anthropic-version: header is required");
    }
    if !body["max_tokens"].is_u64() {
        return invalid("max_tokens: Field required");
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        return invalid("messages: at least one message is required");
    }
    for m in &messages {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return invalid(&format!(
                "messages: Unexpected role \"{role}\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
            ));
        }
        let empty = match &m["content"] {
            Value::String(text) => text.is_empty(),
            Value::Array(blocks) => blocks.is_empty(),
            _ => true,
        };
        if empty {
            return invalid("messages: text content blocks must be non-empty");
        }
    }
    let last = messages.last()?;
    if last["role"] == "assistant"
        && last["content"]
            .as_str()
            .is_some_and(|c| c.trim_end().len() != c.len())
    {
        return invalid("messages: final assistant content cannot end with trailing whitespace");
    }
    None
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if let Some(last) = messages.last() {
        if last["role"] == "assistant" && last["content"] == continuation_prefill().as_str() {
            return Behaviour::Continuation;
        }
        let carries_tool_results = last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
        if carries_tool_results {
            return Behaviour::Normal;
        }
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let markers = [
        ("[midstream-error]", Behaviour::MidstreamError),
        ("[rate-limit]", Behaviour::RateLimited),
        ("[think]", Behaviour::Thinking),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[content-filter]", Behaviour::ContentFilter),
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

async fn messages(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("invalid JSON: {e}"),
            );
        }
    };
    let refused = refusal(&headers, &body);
    let behaviour = if refused.is_some() {
        Behaviour::Rejected
    } else {
        choose(&body, &state.rate_limited)
    };
    let hung_up = Arc::new(AtomicBool::new(false));
    state.requests.push(RecordedRequest {
        headers,
        body: body.clone(),
        behaviour,
        hung_up: hung_up.clone(),
    });
    if let Some(response) = refused {
        return response;
    }
    let fixture = match behaviour {
        Behaviour::Rejected => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Behaviour::Normal => "reply",
        Behaviour::Thinking => "thinking",
        Behaviour::Continuation => "continuation",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::RateLimited => "rate_limit_long_wait",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::ContentFilter => "content_filter",
        Behaviour::Unauthorized => "unauthorized",
    };
    replay("anthropic", fixture, Some(hung_up))
}
