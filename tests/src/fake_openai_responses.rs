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
//! What it does is chosen per request by a marker in the last user input item:
//!
//! | marker              | behaviour                                                     |
//! |---------------------|---------------------------------------------------------------|
//! | (none)              | [`NORMAL_CHUNKS`], then `response.completed` with usage       |
//! | `[midstream-error]` | [`MIDSTREAM_CHUNKS`], then an `error` event, and it closes    |
//! | `[failed]`          | [`MIDSTREAM_CHUNKS`], then `response.failed`, and it closes   |
//! | `[rate-limit]`      | HTTP 429, `Retry-After: 7`, OpenAI's rate-limit error body    |
//!
//! A request whose second-to-last input item is the assistant text of a mid-stream
//! failure (a continuation of it) gets [`CONTINUATION_CHUNKS`].

use crate::fake_server::{
    FakeServer, Recorder, paced_stream, sse_event, streaming_response, unix_now,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

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
    Continuation,
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

fn choose(body: &Value) -> Behaviour {
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let last_user = input
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    if last_user.contains("[midstream-error]") {
        return Behaviour::MidstreamError;
    }
    if last_user.contains("[failed]") {
        return Behaviour::Failed;
    }
    if last_user.contains("[rate-limit]") {
        return Behaviour::RateLimited;
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

/// Builds the typed events of one reply, numbering them.
struct Events {
    frames: Vec<Bytes>,
    seq: u64,
}

impl Events {
    fn push(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.frames.push(sse_event(kind, &data));
    }
}

fn response_object(model: &str, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": "resp_fake1",
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": null,
        "incomplete_details": null,
    })
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
    let behaviour = choose(&body);
    state.requests.push(RecordedRequest {
        headers,
        body: body.clone(),
        behaviour,
    });
    let model = body["model"].as_str().unwrap_or("gpt-5-mini").to_string();
    let (chunks, usage): (&[&str], Option<(u64, u64)>) = match behaviour {
        Behaviour::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "7")],
                axum::Json(json!({"error": {
                    "message": RATE_LIMIT_MESSAGE,
                    "type": "requests",
                    "param": null,
                    "code": "rate_limit_exceeded",
                }})),
            )
                .into_response();
        }
        Behaviour::Normal => (NORMAL_CHUNKS, Some(NORMAL_USAGE)),
        Behaviour::Continuation => (CONTINUATION_CHUNKS, Some(CONTINUATION_USAGE)),
        Behaviour::MidstreamError | Behaviour::Failed => (MIDSTREAM_CHUNKS, None),
    };
    let mut ev = Events {
        frames: Vec::new(),
        seq: 0,
    };
    let in_progress = response_object(&model, "in_progress", json!([]), Value::Null);
    ev.push("response.created", json!({"response": in_progress}));
    ev.push("response.in_progress", json!({"response": in_progress}));
    let item_id = "msg_fake1";
    ev.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": {
            "id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": [],
        }}),
    );
    ev.push(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for chunk in chunks {
        ev.push(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": chunk, "logprobs": []}),
        );
    }
    match (behaviour, usage) {
        (Behaviour::MidstreamError, _) => {
            ev.push(
                "error",
                json!({"code": "server_error", "message": MIDSTREAM_ERROR_MESSAGE, "param": null}),
            );
        }
        (Behaviour::Failed, _) => {
            let mut failed = response_object(&model, "failed", json!([]), Value::Null);
            failed["error"] = json!({"code": "server_error", "message": FAILED_MESSAGE});
            ev.push("response.failed", json!({"response": failed}));
        }
        (_, usage) => {
            let text = chunks.concat();
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            ev.push(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            );
            ev.push(
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
            );
            let item = json!({
                "id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [part],
            });
            ev.push(
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            );
            let (input, output) = usage.unwrap_or_default();
            let usage = json!({
                "input_tokens": input,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input + output,
            });
            ev.push(
                "response.completed",
                json!({"response": response_object(&model, "completed", json!([item]), usage)}),
            );
        }
    }
    let interval = Duration::from_millis(10);
    let body = paced_stream(ev.frames, move |_| interval, None);
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}
