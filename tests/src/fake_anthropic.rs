//! A fake Anthropic Messages API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/messages` in the documented streaming wire format: named
//! server-sent events (`event: NAME` + `data: JSON`) `message_start` (with the input
//! usage), `content_block_start`, `ping`, `content_block_delta`s, `content_block_stop`,
//! `message_delta` (stop reason, output usage) and `message_stop`. A request with
//! `stream: false` (or none) gets the same reply as one Message ([`message`]), when
//! the stream would have ended. Routing, recording and replay are [`Fake`]'s; this
//! module holds the wire format.
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

    fn whole(&self) -> Option<fn(&str) -> Response> {
        Some(message)
    }
}

/// Anthropic's answer to a request that does not stream, made of the events of
/// `sse`: one Message with the content blocks the events built (text and thinking
/// joined, a `tool_use` block's `input` parsed from its JSON fragments), the stop
/// reason and the usage. A stream that breaks off with an `error` event is that
/// error's status (529 when overloaded, else 500) with its body.
pub fn message(sse: &str) -> Response {
    let mut message = json!({});
    let mut blocks: Vec<Value> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    let events = sse
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok());
    for event in events {
        let index = event["index"].as_u64().unwrap_or(0) as usize;
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => message = event["message"].clone(),
            "content_block_start" => {
                if blocks.len() <= index {
                    blocks.resize(index + 1, Value::Null);
                    inputs.resize(index + 1, String::new());
                }
                blocks[index] = event["content_block"].clone();
            }
            "content_block_delta" => {
                let (Some(block), delta) = (blocks.get_mut(index), &event["delta"]) else {
                    continue;
                };
                let append = |block: &mut Value, field: &str, more: &Value| {
                    let so_far = block[field].as_str().unwrap_or_default().to_string();
                    block[field] = json!(so_far + more.as_str().unwrap_or_default());
                };
                match delta["type"].as_str().unwrap_or_default() {
                    "text_delta" => append(block, "text", &delta["text"]),
                    "thinking_delta" => append(block, "thinking", &delta["thinking"]),
                    "signature_delta" => append(block, "signature", &delta["signature"]),
                    "input_json_delta" => {
                        inputs[index].push_str(delta["partial_json"].as_str().unwrap_or_default())
                    }
                    _ => {}
                }
            }
            "content_block_stop" if !inputs.get(index).is_none_or(String::is_empty) => {
                blocks[index]["input"] =
                    serde_json::from_str(&inputs[index]).unwrap_or(Value::Null);
            }
            "message_delta" => {
                message["stop_reason"] = event["delta"]["stop_reason"].clone();
                message["stop_sequence"] = event["delta"]["stop_sequence"].clone();
                for (k, v) in event["usage"].as_object().into_iter().flatten() {
                    message["usage"][k] = v.clone();
                }
            }
            "error" => {
                let kind = event["error"]["type"].as_str().unwrap_or("api_error");
                let status = if kind == "overloaded_error" {
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                let message = event["error"]["message"].as_str().unwrap_or_default();
                return api_error(status, kind, message);
            }
            _ => {}
        }
    }
    message["content"] = json!(blocks);
    axum::Json(message).into_response()
}
