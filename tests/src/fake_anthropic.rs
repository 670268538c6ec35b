//! A fake Anthropic Messages API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/messages` in the documented streaming wire format: named
//! server-sent events (`event: NAME` + `data: JSON`) `message_start` (with the input
//! usage), `content_block_start`, `ping`, `content_block_delta`s, `content_block_stop`,
//! `message_delta` (stop reason, output usage) and `message_stop`. Routing, recording
//! and replay are [`Fake`]'s; this module holds the wire format.
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

use crate::fake_server::{Fake, Incoming, Wire, roles_and_contents};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use crate::fake_server::{Behaviour, RecordedRequest};

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

/// The Messages API's wire format.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnthropicWire;

/// The running fake (its `base_url` is `http://127.0.0.1:PORT`, like the real API's,
/// without `/v1`). Stops when dropped.
pub type FakeAnthropic = Fake<AnthropicWire>;

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

/// Why the real API would refuse the request, if it would: the status, error type and
/// message of its answer.
fn refusal(request: &Incoming<'_>) -> Option<(StatusCode, &'static str, String)> {
    let body = request.body;
    let invalid = |message: &str| {
        Some((
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.to_string(),
        ))
    };
    if request.header("x-api-key").is_none() {
        return Some((
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required".into(),
        ));
    }
    if request.header("anthropic-version").is_none() {
        return invalid("anthropic-version: header is required");
    }
    if !body["max_tokens"].is_u64() {
        return invalid("max_tokens: Field required");
    }
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if messages.is_empty() {
        return invalid("messages: at least one message is required");
    }
    for m in messages {
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

impl Wire for AnthropicWire {
    const FIXTURES: &'static str = "anthropic";

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/messages"
    }

    fn bad_json(&self, error: &serde_json::Error) -> Response {
        api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("invalid JSON: {error}"),
        )
    }

    fn refuse(&self, request: &Incoming<'_>) -> Option<(String, Response)> {
        let (status, kind, message) = refusal(request)?;
        let response = api_error(status, kind, &message);
        Some((message, response))
    }

    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        roles_and_contents(&body["messages"])
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        let last = body["messages"].as_array()?.last()?;
        if last["role"] == "assistant" && last["content"] == continuation_prefill().as_str() {
            return Some(Behaviour::Continuation);
        }
        let carries_tool_results = last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
        carries_tool_results.then_some(Behaviour::Normal)
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[
            ("[rate-limit]", Behaviour::RateLimited),
            ("[think]", Behaviour::Thinking),
        ]
    }
}
