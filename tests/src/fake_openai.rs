//! A fake OpenAI Chat Completions server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/chat/completions` in the documented streaming wire format,
//! replaying the fixtures of `tests/fixtures/openai/`: `data: {chat.completion.chunk}`
//! events, a chunk with the `finish_reason`, then (as the request asks with
//! `stream_options.include_usage`) a chunk with empty `choices` and the `usage`, then
//! `data: [DONE]`. It records every request's headers, JSON body and arrival time,
//! and whether the client hung up before the reply ended.
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
    FakeProvider, FakeServer, FirstTime, Recorder, hung_up, paced_stream, roles_and_contents,
    sse_data, streaming_response, unix_now,
};
use crate::fixture::replay;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

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

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    MidstreamError,
    RateLimited,
    /// `[rate-limit-once]` the first time: 429 with `Retry-After: 1`.
    RateLimitedOnce,
    Slow,
    Continuation,
    NoUsage,
    Unauthorized,
    ToolCalls,
    ContentFilter,
    Unavailable,
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
    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
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
pub struct FakeOpenAi {
    server: FakeServer,
    state: FakeState,
}

impl FakeOpenAi {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
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

impl FakeProvider for FakeOpenAi {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.last().is_some_and(|m| m["role"] == "tool") {
        return Behaviour::Normal;
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
        ("[slow]", Behaviour::Slow),
        ("[unauthorized]", Behaviour::Unauthorized),
        ("[no-usage]", Behaviour::NoUsage),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[content-filter]", Behaviour::ContentFilter),
        ("[unavailable]", Behaviour::Unavailable),
    ];
    if let Some((_, b)) = markers.iter().find(|(m, _)| last_user.contains(m)) {
        return *b;
    }
    if last_user.contains("[rate-limit-once]") {
        return if rate_limited.first() {
            Behaviour::RateLimitedOnce
        } else {
            Behaviour::Normal
        };
    }
    let partial = MIDSTREAM_CHUNKS.concat();
    let continues_partial = messages.len() >= 2
        && messages[messages.len() - 2]["role"] == "assistant"
        && messages[messages.len() - 2]["content"] == partial.as_str();
    if continues_partial {
        Behaviour::Continuation
    } else {
        Behaviour::Normal
    }
}

async fn completions(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
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
    let hung_up = Arc::new(AtomicBool::new(false));
    state.requests.push(RecordedRequest {
        headers,
        body: body.clone(),
        behaviour,
        hung_up: hung_up.clone(),
    });
    let fixture = match behaviour {
        Behaviour::Normal => "reply",
        Behaviour::NoUsage => "reply_without_usage",
        Behaviour::Continuation => "continuation",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::RateLimited => "rate_limit_long_wait",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::Unauthorized => "unauthorized",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::ContentFilter => "content_filter",
        Behaviour::Unavailable => "service_unavailable",
        Behaviour::Slow => return slow_reply(&body, hung_up),
    };
    replay("openai", fixture, Some(hung_up))
}

/// `[slow]`: forty chunks, one every [`SLOW_CHUNK_INTERVAL`], then stop and usage.
fn slow_reply(body: &Value, hung_up: Arc<AtomicBool>) -> Response {
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
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
    let body = paced_stream(frames, |_| SLOW_CHUNK_INTERVAL, Some(hung_up));
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}
