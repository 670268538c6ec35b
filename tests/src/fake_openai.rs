//! A fake OpenAI Chat Completions server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/chat/completions` in the documented streaming wire format:
//! `data: {chat.completion.chunk}` events, a chunk with `finish_reason: "stop"`, then
//! (as the request asks with `stream_options.include_usage`) a chunk with empty
//! `choices` and the `usage`, then `data: [DONE]`. It records every request's
//! headers and JSON body, and whether the client hung up before the reply ended.
//!
//! What it does is chosen per request by a marker in the last user message:
//!
//! | marker              | behaviour                                                   |
//! |---------------------|-------------------------------------------------------------|
//! | (none)              | [`NORMAL_CHUNKS`], then stop and usage                      |
//! | `[midstream-error]` | [`MIDSTREAM_CHUNKS`], then an `error` event, and it closes  |
//! | `[rate-limit]`      | HTTP 429, `Retry-After: 7`, OpenAI's rate-limit error body  |
//! | `[slow]`            | [`slow_chunks`], one every [`SLOW_CHUNK_INTERVAL`]          |
//! | `[unauthorized]`    | HTTP 401 with OpenAI's invalid-key error body               |
//! | `[no-usage]`        | [`NORMAL_CHUNKS`] and stop, but no usage chunk (as some     |
//! |                     | compatible servers do)                                      |
//!
//! A request whose second-to-last message is the assistant text of a mid-stream
//! error (a continuation of it) gets [`CONTINUATION_CHUNKS`].

use crate::fake_server::{
    FakeServer, Recorder, hung_up, paced_stream, roles_and_contents, sse_data, streaming_response,
    unix_now,
};
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
    Slow,
    Continuation,
    NoUsage,
    Unauthorized,
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

fn choose(body: &Value) -> Behaviour {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    if last_user.contains("[midstream-error]") {
        return Behaviour::MidstreamError;
    }
    if last_user.contains("[rate-limit]") {
        return Behaviour::RateLimited;
    }
    if last_user.contains("[slow]") {
        return Behaviour::Slow;
    }
    if last_user.contains("[unauthorized]") {
        return Behaviour::Unauthorized;
    }
    if last_user.contains("[no-usage]") {
        return Behaviour::NoUsage;
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
    let behaviour = choose(&body);
    let hung_up = Arc::new(AtomicBool::new(false));
    state.requests.push(RecordedRequest {
        headers,
        body: body.clone(),
        behaviour,
        hung_up: hung_up.clone(),
    });
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
    let chunk = |content: &str| {
        sse_data(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": null}],
        }))
    };
    let stop = sse_data(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }));
    let usage = |(prompt, completion): (u64, u64)| {
        sse_data(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }))
    };
    let done = Bytes::from_static(b"data: [DONE]\n\n");
    let (frames, interval) = match behaviour {
        Behaviour::Unauthorized => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {
                    "message": UNAUTHORIZED_MESSAGE,
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }})),
            )
                .into_response();
        }
        Behaviour::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "7")],
                axum::Json(json!({"error": {
                    "message": RATE_LIMIT_MESSAGE,
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }})),
            )
                .into_response();
        }
        Behaviour::Normal => {
            let mut frames: Vec<Bytes> = NORMAL_CHUNKS.iter().map(|c| chunk(c)).collect();
            frames.extend([stop, usage(NORMAL_USAGE), done]);
            (frames, Duration::from_millis(10))
        }
        Behaviour::NoUsage => {
            let mut frames: Vec<Bytes> = NORMAL_CHUNKS.iter().map(|c| chunk(c)).collect();
            frames.extend([stop, done]);
            (frames, Duration::from_millis(10))
        }
        Behaviour::Continuation => {
            let mut frames: Vec<Bytes> = CONTINUATION_CHUNKS.iter().map(|c| chunk(c)).collect();
            frames.extend([stop, usage(CONTINUATION_USAGE), done]);
            (frames, Duration::from_millis(10))
        }
        Behaviour::Slow => {
            let chunks = slow_chunks();
            let mut frames: Vec<Bytes> = chunks.iter().map(|c| chunk(c)).collect();
            frames.extend([stop, usage((10, chunks.len() as u64)), done]);
            (frames, SLOW_CHUNK_INTERVAL)
        }
        Behaviour::MidstreamError => {
            let mut frames: Vec<Bytes> = MIDSTREAM_CHUNKS.iter().map(|c| chunk(c)).collect();
            frames.push(sse_data(json!({"error": {
                "message": MIDSTREAM_ERROR_MESSAGE,
                "type": "server_error",
            }})));
            (frames, Duration::from_millis(10))
        }
    };
    let body = paced_stream(frames, move |_| interval, Some(hung_up));
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}
