//! A fake OpenAI Chat Completions server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/chat/completions` in the documented streaming wire format,
//! replaying the fixtures of `tests/fixtures/openai/`: `data: {chat.completion.chunk}`
//! events, a chunk with the `finish_reason`, then (as the request asks with
//! `stream_options.include_usage`) a chunk with empty `choices` and the `usage`, then
//! `data: [DONE]`. A request with `stream: false` (or none) gets the same reply as
//! one `chat.completion` ([`chat_completion`]), when the stream would have ended.
//! Routing, recording and replay are [`Fake`]'s; this module holds the wire format.
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

    fn whole(&self) -> Option<fn(&str) -> Response> {
        Some(chat_completion)
    }
}

/// OpenAI's answer to `stream: false`, made of the `chat.completion.chunk`s of `sse`:
/// one `chat.completion` whose message holds the text, reasoning and tool calls the
/// chunks carried (each call whole), with the last finish reason and the usage. A
/// stream that breaks off with an `error` event is a 500 with that error, as a
/// request that fails before its answer is.
pub fn chat_completion(sse: &str) -> Response {
    let mut head = json!({});
    let (mut text, mut reasoning) = (String::new(), String::new());
    let mut calls: Vec<Value> = Vec::new();
    let (mut finish, mut usage) = (Value::Null, None);
    let chunks = sse
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok());
    for chunk in chunks {
        if let Some(error) = chunk.get("error") {
            let body = axum::Json(json!({"error": error}));
            return (StatusCode::INTERNAL_SERVER_ERROR, body).into_response();
        }
        if head.get("id").is_none() && chunk["id"].as_str().is_some_and(|id| !id.is_empty()) {
            head = json!({"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]});
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            text.push_str(delta["content"].as_str().unwrap_or_default());
            reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
            for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = fragment["index"].as_u64().unwrap_or(0) as usize;
                if calls.len() <= index {
                    calls.resize(
                        index + 1,
                        json!({"type": "function",
                        "function": {"name": "", "arguments": ""}}),
                    );
                }
                let call = &mut calls[index];
                if let Some(id) = fragment["id"].as_str() {
                    call["id"] = json!(id);
                }
                if let Some(name) = fragment["function"]["name"].as_str() {
                    call["function"]["name"] = json!(name);
                }
                let args = fragment["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default();
                let so_far = call["function"]["arguments"].as_str().unwrap_or_default();
                call["function"]["arguments"] = json!(format!("{so_far}{args}"));
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
        if chunk["usage"].is_object() {
            usage = Some(chunk["usage"].clone());
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    let mut body = json!({
        "id": head.get("id").cloned().unwrap_or(json!("chatcmpl-fake")),
        "object": "chat.completion",
        "created": head.get("created").cloned().unwrap_or(json!(unix_now())),
        "model": head.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
    });
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    axum::Json(body).into_response()
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
