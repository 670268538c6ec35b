//! A fake Google Gemini API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` in the
//! documented streaming wire format: `data: {GenerateContentResponse}` events, with
//! text in `candidates[0].content.parts[]` (thought summaries marked `thought: true`),
//! the running `usageMetadata` in every chunk, `finishReason` in the last one, and no
//! end marker: the stream just ends. Routing, recording and replay are [`Fake`]'s;
//! this module holds the wire format.
//!
//! The replies are the fixtures of `tests/fixtures/gemini/`, chosen by a marker in the
//! text of the last `user` turn:
//!
//! | marker             | fixture                                                        |
//! |--------------------|----------------------------------------------------------------|
//! | (none)             | `reply`: a thought, [`NORMAL_CHUNKS`], `STOP`, [`NORMAL_USAGE`] |
//! | `[tool-calls]`     | `tool_calls`: text, then two `functionCall` parts              |
//! | `[content-filter]` | `content_filter`: [`SAFETY_CHUNKS`], then `finishReason: "SAFETY"` |
//! | `[blocked-prompt]` | `blocked_prompt`: `promptFeedback.blockReason: "SAFETY"`, no candidates |
//! | `[midstream-error]` | `midstream_error`: text, then an `error` chunk                |
//! | `[rate-limit-once]` | `rate_limit` (429 whose `RetryInfo` says `retryDelay: "1s"`) the first time, then `reply` |
//! | `[rate-limit]`     | `rate_limit_long_wait`: 429 `RESOURCE_EXHAUSTED`, no delay     |
//! | `[unauthorized]`   | `unauthorized`: 400 `INVALID_ARGUMENT` / `API_KEY_INVALID`     |
//!
//! A request whose last turn carries `functionResponse` parts gets `reply`.

use crate::fake_server::{Fake, Incoming, Wire};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use crate::fake_server::{Behaviour, RecordedRequest};

pub const THOUGHT: &str = "The user wants a greeting.";
pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " the", " fake", " Gemini", "."];
/// `(promptTokenCount, candidatesTokenCount, thoughtsTokenCount)` of the normal reply.
pub const NORMAL_USAGE: (u64, u64, u64) = (31, 6, 12);
pub const SAFETY_CHUNKS: &[&str] = &["Here is how", " one would"];
pub const RATE_LIMIT_MESSAGE: &str =
    "You exceeded your current quota, please check your plan and billing details.";

/// The Gemini API's wire format.
#[derive(Clone, Copy, Debug, Default)]
pub struct GeminiWire;

/// The running fake (its `base_url` is `http://127.0.0.1:PORT`; the API adds
/// `/v1beta`). Stops when dropped.
pub type FakeGemini = Fake<GeminiWire>;

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

impl Wire for GeminiWire {
    const FIXTURES: &'static str = "gemini";

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST
            && path
                .strip_prefix("/v1beta/models/")
                .is_some_and(|m| !m.contains('/') && m.ends_with(":streamGenerateContent"))
    }

    fn bad_json(&self, error: &serde_json::Error) -> Response {
        error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("Invalid JSON payload received. {error}"),
        )
    }

    fn refuse(&self, request: &Incoming<'_>) -> Option<(String, Response)> {
        // Without alt=sse the API streams a JSON array, which is not what Chorus reads.
        (request.uri.query() != Some("alt=sse")).then(|| {
            let message = "this fake only speaks alt=sse";
            let response = error_response(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
            (message.to_string(), response)
        })
    }

    /// `(role, text of all parts joined)` of every turn in `contents`.
    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        let contents = body["contents"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        contents
            .iter()
            .map(|c| {
                let text: String = c["parts"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
                    .unwrap_or_default();
                (c["role"].as_str().unwrap_or_default().to_string(), text)
            })
            .collect()
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        let answers_calls = body["contents"].as_array()?.last()?["parts"]
            .as_array()?
            .iter()
            .any(|p| p.get("functionResponse").is_some());
        answers_calls.then_some(Behaviour::Normal)
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[
            ("[blocked-prompt]", Behaviour::BlockedPrompt),
            ("[rate-limit]", Behaviour::RateLimited),
        ]
    }
}
