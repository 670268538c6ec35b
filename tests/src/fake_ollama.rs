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
//! Routing, recording and replay are [`Fake`]'s; this module holds the wire format and
//! counts `/api/tags` calls.
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

use crate::fake_server::{Fake, Wire, paced_stream, roles_and_contents, streaming_response};
use crate::fixture::{halves, replay};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use crate::fake_server::{Behaviour, RecordedRequest};

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

/// Ollama's wire format; it counts the calls of its model list.
#[derive(Clone, Debug, Default)]
pub struct OllamaWire {
    tags_calls: Arc<AtomicUsize>,
}

/// The running fake. Stops when dropped.
pub type FakeOllama = Fake<OllamaWire>;

impl Fake<OllamaWire> {
    /// How many times `/api/tags` was asked.
    pub fn tags_calls(&self) -> usize {
        self.wire().tags_calls.load(Ordering::SeqCst)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

impl Wire for OllamaWire {
    const FIXTURES: &'static str = "ollama";

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/api/chat"
    }

    /// `GET /api/tags`: the model list.
    fn other(&self, method: &Method, path: &str) -> Option<Response> {
        (method == Method::GET && path == "/api/tags").then(|| {
            self.tags_calls.fetch_add(1, Ordering::SeqCst);
            replay(Self::FIXTURES, "tags", None)
        })
    }

    fn bad_json(&self, e: &serde_json::Error) -> Response {
        error(StatusCode::BAD_REQUEST, &e.to_string())
    }

    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        roles_and_contents(&body["messages"])
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        if !MODELS.contains(&body["model"].as_str().unwrap_or_default()) {
            return Some(Behaviour::ModelNotFound);
        }
        let last = body["messages"].as_array()?.last()?;
        if last["role"] == "tool" {
            return Some(Behaviour::Normal);
        }
        if last["role"] != "assistant" {
            return None;
        }
        let prefill = last["content"].as_str().unwrap_or_default();
        Some(if slow_script().starts_with(prefill) {
            Behaviour::Continuation
        } else {
            Behaviour::BadPrefill
        })
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[("[slow]", Behaviour::Slow)]
    }

    fn build(&self, behaviour: Behaviour, request: &RecordedRequest) -> Option<Response> {
        let body = &request.body;
        let model = body["model"].as_str().unwrap_or_default();
        let (chunks, interval): (Vec<String>, Duration) = match behaviour {
            Behaviour::ModelNotFound => {
                return Some(error(
                    StatusCode::NOT_FOUND,
                    &format!("model '{model}' not found"),
                ));
            }
            Behaviour::BadPrefill => {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "the fake can only continue a prefix of its slow script",
                ));
            }
            Behaviour::Slow => (slow_chunks(), SLOW_CHUNK_INTERVAL),
            Behaviour::Continuation => {
                let (_, prefill) = request.turns.last()?;
                let rest = &slow_script()[prefill.len()..];
                // The rest in word-sized pieces (the prefill may end mid-word).
                let pieces = rest.split_inclusive(' ').map(str::to_string).collect();
                (pieces, Duration::from_millis(10))
            }
            _ => return None,
        };
        Some(ndjson_reply(request, &chunks, interval))
    }
}

/// A chat reply built in code: `chunks`, one line each every `interval`, then the
/// final line with the usage.
fn ndjson_reply(request: &RecordedRequest, chunks: &[String], interval: Duration) -> Response {
    let body = &request.body;
    let model = body["model"].as_str().unwrap_or_default();
    let prompt = prompt_tokens(body);
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
    let pieces: Vec<Bytes> = lines
        .into_iter()
        .flat_map(|line| halves(Bytes::from(line + "\n")))
        .collect();
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
        paced_stream(pieces, pause, Some(request.hang_up_flag())),
    )
}
