//! A fake Google Gemini API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` in the
//! documented streaming wire format: `data: {GenerateContentResponse}` events, with
//! text in `candidates[0].content.parts[]` (thought summaries marked `thought: true`),
//! the running `usageMetadata` in every chunk, `finishReason` in the last one, and no
//! end marker: the stream just ends. It records every request's path, query, headers
//! and JSON body.
//!
//! What it does is chosen by a marker in the text of the last `user` turn:
//!
//! | marker             | behaviour                                                      |
//! |--------------------|----------------------------------------------------------------|
//! | (none)             | a thought, [`NORMAL_CHUNKS`], `STOP`, usage [`NORMAL_USAGE`]    |
//! | `[safety]`         | [`SAFETY_CHUNKS`], then a chunk with `finishReason: "SAFETY"`  |
//! | `[blocked-prompt]` | one chunk with `promptFeedback.blockReason: "SAFETY"`, no candidates |
//! | `[rate-limit]`     | HTTP 429 with Google's `RESOURCE_EXHAUSTED` error body         |

use crate::fake_server::{FakeServer, Recorder, paced_stream, streaming_response};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

pub const THOUGHT: &str = "The user wants a greeting.";
pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " Gemini", "."];
/// `(promptTokenCount, candidatesTokenCount, thoughtsTokenCount)` of the normal reply.
pub const NORMAL_USAGE: (u64, u64, u64) = (31, 6, 12);
pub const SAFETY_CHUNKS: &[&str] = &["Here is how", " one would"];
pub const RATE_LIMIT_MESSAGE: &str =
    "You exceeded your current quota, please check your plan and billing details.";

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Safety,
    BlockedPrompt,
    RateLimited,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The last path segment: `{model}:streamGenerateContent`.
    pub model_and_method: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
}

impl RecordedRequest {
    pub fn api_key(&self) -> Option<&str> {
        self.headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
    }

    /// `(role, text of all parts joined)` of every turn in `contents`.
    pub fn turns(&self) -> Vec<(String, String)> {
        self.body["contents"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let text: String = c["parts"]
                            .as_array()
                            .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
                            .unwrap_or_default();
                        (c["role"].as_str().unwrap_or_default().to_string(), text)
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
pub struct FakeGemini {
    server: FakeServer,
    state: FakeState,
}

impl FakeGemini {
    pub async fn start() -> anyhow::Result<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1beta/models/{model_and_method}", post(generate))
            .with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT` (the API adds `/v1beta`).
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

fn choose(body: &Value) -> Behaviour {
    let last_user: String = body["contents"]
        .as_array()
        .and_then(|cs| cs.iter().rev().find(|c| c["role"] == "user"))
        .and_then(|c| c["parts"].as_array())
        .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default();
    if last_user.contains("[safety]") {
        Behaviour::Safety
    } else if last_user.contains("[blocked-prompt]") {
        Behaviour::BlockedPrompt
    } else if last_user.contains("[rate-limit]") {
        Behaviour::RateLimited
    } else {
        Behaviour::Normal
    }
}

fn error_response(status: StatusCode, api_status: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": api_status,
        }})),
    )
        .into_response()
}

async fn generate(
    State(state): State<FakeState>,
    Path(model_and_method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(model) = model_and_method.strip_suffix(":streamGenerateContent") else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("unknown method in {model_and_method:?}"),
        );
    };
    let model = model.to_string();
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. {e}"),
            );
        }
    };
    let behaviour = choose(&body);
    state.requests.push(RecordedRequest {
        model_and_method: model_and_method.clone(),
        query: query.clone(),
        headers,
        body: body.clone(),
        behaviour,
    });
    if query.as_deref() != Some("alt=sse") {
        // Without alt=sse the API streams a JSON array, which is not what Chorus reads.
        return error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "this fake only speaks alt=sse",
        );
    }
    let response_id = "fake-response-1";
    let usage = |prompt: u64, candidates: u64, thoughts: u64| {
        let mut u = json!({
            "promptTokenCount": prompt,
            "totalTokenCount": prompt + candidates + thoughts,
        });
        if candidates > 0 {
            u["candidatesTokenCount"] = json!(candidates);
        }
        if thoughts > 0 {
            u["thoughtsTokenCount"] = json!(thoughts);
        }
        u
    };
    let chunk = |part: Value, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({
            "content": {"parts": [part], "role": "model"},
            "index": 0,
        });
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        sse(json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        }))
    };
    let frames: Vec<Bytes> = match behaviour {
        Behaviour::RateLimited => {
            return error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                RATE_LIMIT_MESSAGE,
            );
        }
        Behaviour::Normal => {
            let (prompt, candidates, thoughts) = NORMAL_USAGE;
            let mut frames = vec![chunk(
                json!({"text": THOUGHT, "thought": true}),
                None,
                usage(prompt, 0, thoughts),
            )];
            let last = NORMAL_CHUNKS.len() - 1;
            for (i, text) in NORMAL_CHUNKS.iter().enumerate() {
                let finish = (i == last).then_some("STOP");
                let so_far = if i == last { candidates } else { i as u64 + 1 };
                frames.push(chunk(
                    json!({"text": text}),
                    finish,
                    usage(prompt, so_far, thoughts),
                ));
            }
            frames
        }
        Behaviour::Safety => {
            let mut frames: Vec<Bytes> = SAFETY_CHUNKS
                .iter()
                .enumerate()
                .map(|(i, text)| chunk(json!({"text": text}), None, usage(9, i as u64 + 1, 0)))
                .collect();
            // The blocked candidate: a finish reason and ratings, no content.
            frames.push(sse(json!({
                "candidates": [{
                    "finishReason": "SAFETY",
                    "index": 0,
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
                        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                    ],
                }],
                "usageMetadata": usage(9, 2, 0),
                "modelVersion": model,
                "responseId": response_id,
            })));
            frames
        }
        Behaviour::BlockedPrompt => vec![sse(json!({
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"},
                ],
            },
            "usageMetadata": usage(7, 0, 0),
            "modelVersion": model,
            "responseId": response_id,
        }))],
    };
    let body = paced_stream(frames, |_| Duration::from_millis(10), None);
    streaming_response("text/event-stream", &[], body)
}

/// One SSE event, with the `\r\n\r\n` separator the API uses.
fn sse(value: Value) -> Bytes {
    Bytes::from(format!("data: {value}\r\n\r\n"))
}
