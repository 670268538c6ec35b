//! A fake Ollama server on `127.0.0.1:0`.
//!
//! - `GET /api/tags` lists [`MODELS`] in the documented shape (`{"models": [{"name",
//!   "model", "modified_at", "size", "digest", "details"}]}`): the fixture
//!   `tests/fixtures/ollama/tags`.
//! - `POST /api/chat` streams newline-delimited JSON (`application/x-ndjson`): one
//!   object per line with `message.content`, then a final object with `done: true`,
//!   `done_reason` and the token counts `prompt_eval_count` and `eval_count`. Every
//!   line is written in two pieces split mid-line, as a network may deliver it. A
//!   model it does not list gets the documented 404 `{"error": "model '...' not found"}`.
//!
//! It records every chat request's JSON body and counts `/api/tags` calls.
//!
//! What `/api/chat` does is chosen by the messages:
//!
//! | request                                    | behaviour                                   |
//! |--------------------------------------------|---------------------------------------------|
//! | last message is `assistant` (a prefill)    | the rest of [`slow_script`] after that text, continued exactly (built from the prefill) |
//! | last user message contains `[slow]`        | [`slow_script`] in [`slow_chunks`], one every [`SLOW_CHUNK_INTERVAL`] |
//! | `[tool-calls]`                             | fixture `tool_calls`: `message.tool_calls` in one line |
//! | `[midstream-error]`                        | fixture `midstream_error`: text, then an `{"error": ...}` line |
//! | `[rate-limit-once]`                        | fixture `rate_limit` (429, `retry-after: 1`) the first time, then `reply` |
//! | `[unauthorized]`                           | fixture `unauthorized`: 401, as an authenticating proxy answers |
//! | otherwise, or after a tool result          | fixture `reply`: [`NORMAL_CHUNKS`], usage [`NORMAL_USAGE`] |

use crate::fake_server::{
    FakeProvider, FakeServer, FirstTime, Recorder, paced_stream, roles_and_contents,
    streaming_response,
};
use crate::fixture::replay;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const MODELS: &[&str] = &["llama3.2:latest", "qwen3:8b"];
pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " llama", "."];
pub const NORMAL_USAGE: (u64, u64) = (26, 6);
pub const SLOW_CHUNK_INTERVAL: Duration = Duration::from_millis(150);

/// The reply of `[slow]`, 40 chunks (with non-ASCII text, so a split character shows).
pub fn slow_chunks() -> Vec<String> {
    (0..40).map(|i| format!("wörd{i} ")).collect()
}

pub fn slow_script() -> String {
    slow_chunks().concat()
}

/// The usage the fake reports: the prompt's characters over four, and one token a chunk.
pub fn prompt_tokens(body: &Value) -> u64 {
    let chars: usize = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().chars().count())
                .sum()
        })
        .unwrap_or_default();
    (chars as u64).div_ceil(4)
}

/// What the fake did with a chat request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Slow,
    Continuation,
    ModelNotFound,
    /// A prefill that is not a prefix of the slow script.
    BadPrefill,
    ToolCalls,
    MidstreamError,
    /// `[rate-limit-once]` the first time: 429 with `retry-after: 1`.
    RateLimitedOnce,
    Unauthorized,
}

/// One chat request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub body: Value,
    pub behaviour: Behaviour,
}

impl RecordedRequest {
    /// `(role, content)` of every message of the request.
    pub fn messages(&self) -> Vec<(String, String)> {
        roles_and_contents(&self.body["messages"])
    }
}

#[derive(Clone, Default)]
struct FakeState {
    requests: Recorder<RecordedRequest>,
    tags_calls: Arc<AtomicUsize>,
    rate_limited: FirstTime,
}

/// The running fake. Stops when dropped.
pub struct FakeOllama {
    server: FakeServer,
    state: FakeState,
}

impl FakeOllama {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/api/tags", get(tags))
            .route("/api/chat", post(chat))
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every chat request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }

    /// How many times `/api/tags` was asked.
    pub fn tags_calls(&self) -> usize {
        self.state.tags_calls.load(Ordering::SeqCst)
    }
}

impl FakeProvider for FakeOllama {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

async fn tags(State(state): State<FakeState>) -> Response {
    state.tags_calls.fetch_add(1, Ordering::SeqCst);
    replay("ollama", "tags", None)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    if !MODELS.contains(&body["model"].as_str().unwrap_or_default()) {
        return Behaviour::ModelNotFound;
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.last().is_some_and(|m| m["role"] == "tool") {
        return Behaviour::Normal;
    }
    if let Some(last) = messages.last()
        && last["role"] == "assistant"
    {
        let prefill = last["content"].as_str().unwrap_or_default();
        return if slow_script().starts_with(prefill) {
            Behaviour::Continuation
        } else {
            Behaviour::BadPrefill
        };
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let markers = [
        ("[slow]", Behaviour::Slow),
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

async fn chat(State(state): State<FakeState>, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let behaviour = choose(&body, &state.rate_limited);
    state.requests.push(RecordedRequest {
        body: body.clone(),
        behaviour,
    });
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let (chunks, interval): (Vec<String>, Duration) = match behaviour {
        Behaviour::ModelNotFound => {
            return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
        }
        Behaviour::BadPrefill => {
            return error(
                StatusCode::BAD_REQUEST,
                "the fake can only continue a prefix of its slow script",
            );
        }
        Behaviour::Normal => return replay("ollama", "reply", None),
        Behaviour::ToolCalls => return replay("ollama", "tool_calls", None),
        Behaviour::MidstreamError => return replay("ollama", "midstream_error", None),
        Behaviour::RateLimitedOnce => return replay("ollama", "rate_limit", None),
        Behaviour::Unauthorized => return replay("ollama", "unauthorized", None),
        Behaviour::Slow => (slow_chunks(), SLOW_CHUNK_INTERVAL),
        Behaviour::Continuation => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let prefill = messages
                .last()
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_string();
            let rest = slow_script()[prefill.len()..].to_string();
            // The rest in word-sized pieces (the prefill may end mid-word).
            let pieces = rest
                .split_inclusive(' ')
                .map(str::to_string)
                .collect::<Vec<_>>();
            (pieces, Duration::from_millis(10))
        }
    };
    let prompt = prompt_tokens(&body);
    let eval = chunks.len() as u64;
    let mut lines: Vec<String> = chunks
        .iter()
        .map(|c| {
            json!({
                "model": model,
                "created_at": "2025-10-26T17:15:24.097767Z",
                "message": {"role": "assistant", "content": c},
                "done": false,
            })
            .to_string()
        })
        .collect();
    lines.push(
        json!({
            "model": model,
            "created_at": "2025-10-26T17:15:24.166576Z",
            "message": {"role": "assistant", "content": ""},
            "done": true,
            "done_reason": "stop",
            "total_duration": 4883583458u64,
            "load_duration": 1334875,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": 342546000,
            "eval_count": eval,
            "eval_duration": 4535599000u64,
        })
        .to_string(),
    );
    // Each line goes out in two writes, cut mid-line (inside a multi-byte character
    // when there is one), so the reader must join pieces of lines.
    let mut pieces: Vec<Bytes> = Vec::new();
    for line in lines {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let cut = bytes
            .iter()
            .position(|b| *b >= 0x80)
            .map_or(bytes.len() / 2, |i| i + 1);
        let tail = bytes.split_off(cut);
        pieces.push(Bytes::from(bytes));
        pieces.push(Bytes::from(tail));
    }
    // The pace of the reply before each line; a short pause inside it, so the two
    // pieces reach the reader as separate reads.
    let pause = move |n: usize| {
        if n.is_multiple_of(2) {
            interval
        } else {
            Duration::from_millis(2)
        }
    };
    streaming_response(
        "application/x-ndjson",
        &[],
        paced_stream(pieces, pause, None),
    )
}
