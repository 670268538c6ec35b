//! A fake OpenAI Chat Completions server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/chat/completions` in the documented streaming wire format,
//! replaying the fixtures of `tests/fixtures/openai/`: `data: {chat.completion.chunk}`
//! events, a chunk with the `finish_reason`, then (as the request asks with
//! `stream_options.include_usage`) a chunk with empty `choices` and the `usage`, then
//! `data: [DONE]`. Routing, recording and replay are [`Fake`]'s; this module holds the
//! wire format.
//!
//! What it does is chosen per request by a marker in the last user message:
//!
//! | marker              | fixture / behaviour                                          |
//! |---------------------|--------------------------------------------------------------|
//! | (none)              | `reply`: [`NORMAL_CHUNKS`], stop, usage [`NORMAL_USAGE`]     |
//! | `[tool-calls]`      | `tool_calls`: two parallel calls in argument fragments       |
//! | `[content-filter]`  | `content_filter`: text, then `finish_reason: content_filter` |
//! | `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], an `error` event    |
//! | `[rate-limit-once]` | `rate_limit` (429, `Retry-After: 1`) the first time, then `reply` |
//! | `[rate-limit]`      | `rate_limit_long_wait`: 429 with `Retry-After: 7`            |
//! | `[unavailable]`     | `service_unavailable`: HTTP 503                              |
//! | `[unauthorized]`    | `unauthorized`: HTTP 401 with OpenAI's invalid-key body      |
//! | `[no-usage]`        | `reply_without_usage`, as some compatible servers answer     |
//! | `[slow]`            | [`slow_chunks`], one every [`SLOW_CHUNK_INTERVAL`] (built in |
//! |                     | code: forty chunks paced for a stop test)                    |
//!
//! A request whose second-to-last message is the assistant text of a mid-stream
//! error (a continuation of it) gets `continuation` ([`CONTINUATION_CHUNKS`]); one
//! whose last message is a tool result gets `reply`.

use crate::fake_server::{
    Fake, Wire, paced_stream, roles_and_contents, sse_data, streaming_response, unix_now,
};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

pub use crate::fake_server::{Behaviour, RecordedRequest};

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " model", "."];
pub const NORMAL_USAGE: (u64, u64) = (23, 6);
pub const MIDSTREAM_CHUNKS: &[&str] = &["The answer", " is", " forty"];
pub const CONTINUATION_CHUNKS: &[&str] = &["-two", ", as", " always."];
pub const CONTINUATION_USAGE: (u64, u64) = (57, 3);
/// Exactly what OpenAI sends in a mid-stream error event.
pub const MIDSTREAM_ERROR_MESSAGE: &str = "The server had an error while processing your request.";
/// OpenAI's answer to a wrong key (the key itself is elided here).
pub const UNAUTHORIZED_MESSAGE: &str = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.";
pub const RATE_LIMIT_MESSAGE: &str = "Rate limit reached for gpt-4o-mini";
pub const SLOW_CHUNK_INTERVAL: Duration = Duration::from_millis(150);

/// The reply of `[slow]`: 40 chunks.
pub fn slow_chunks() -> Vec<String> {
    (0..40).map(|i| format!("slow{i} ")).collect()
}

/// OpenAI's Chat Completions wire format.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAiWire;

/// The running fake. Stops when dropped.
pub type FakeOpenAi = Fake<OpenAiWire>;

/// OpenAI's 400 for a body that is not JSON (the Responses API answers the same).
pub fn invalid_json(error: &serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": format!("invalid JSON: {error}"), "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// What a Chat Completions history (OpenAI's or Azure's) decides before any marker:
/// a last message with a tool result gets the plain reply, and one going on from the
/// assistant text `partial` (the second-to-last message), if given, the continuation.
pub fn chat_history(body: &Value, partial: Option<&str>) -> Option<Behaviour> {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    match messages {
        [.., last] if last["role"] == "tool" => Some(Behaviour::Normal),
        [.., before, _]
            if before["role"] == "assistant" && partial.is_some_and(|p| before["content"] == p) =>
        {
            Some(Behaviour::Continuation)
        }
        _ => None,
    }
}

impl Wire for OpenAiWire {
    const FIXTURES: &'static str = "openai";

    /// The API's paths start with `/v1`, which the `base_url` includes.
    fn base_path(&self) -> &'static str {
        "/v1"
    }

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/chat/completions"
    }

    fn bad_json(&self, error: &serde_json::Error) -> Response {
        invalid_json(error)
    }

    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        roles_and_contents(&body["messages"])
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        chat_history(body, Some(&MIDSTREAM_CHUNKS.concat()))
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[
            ("[rate-limit]", Behaviour::RateLimited),
            ("[slow]", Behaviour::Slow),
            ("[no-usage]", Behaviour::NoUsage),
            ("[unavailable]", Behaviour::Unavailable),
        ]
    }

    fn build(&self, behaviour: Behaviour, request: &RecordedRequest) -> Option<Response> {
        (behaviour == Behaviour::Slow).then(|| slow_reply(request))
    }
}

/// `[slow]`: forty chunks, one every [`SLOW_CHUNK_INTERVAL`], then stop and usage.
fn slow_reply(request: &RecordedRequest) -> Response {
    let model = request.body["model"]
        .as_str()
        .unwrap_or("gpt-4o-mini")
        .to_string();
    let chunk = |delta: Value, finish: Value| {
        sse_data(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let chunks = slow_chunks();
    let mut frames: Vec<Bytes> = chunks
        .iter()
        .map(|c| chunk(json!({"role": "assistant", "content": c}), Value::Null))
        .collect();
    frames.push(chunk(json!({}), json!("stop")));
    frames.push(sse_data(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": unix_now(),
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": chunks.len(), "total_tokens": 10 + chunks.len()},
    })));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let body = paced_stream(
        frames,
        |_| SLOW_CHUNK_INTERVAL,
        Some(request.hang_up_flag()),
    );
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}
