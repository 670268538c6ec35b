//! A fake OpenAI Responses API server on `127.0.0.1:0`.
//!
//! It answers `POST /v1/responses` in the documented streaming format: typed
//! server-sent events (`event: TYPE` and `data: {"type": TYPE, "sequence_number": N,
//! ...}`) in the order OpenAI sends them for a text reply: `response.created`,
//! `response.in_progress`, `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`..., `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, and
//! `response.completed` with the usage. There is no `[DONE]`. Routing, recording and
//! replay are [`Fake`]'s; this module holds the wire format.
//!
//! The replies are the fixtures of `tests/fixtures/openai_responses/`, chosen per
//! request by a marker in the last user input item:
//!
//! | marker              | fixture                                                       |
//! |---------------------|---------------------------------------------------------------|
//! | (none)              | `reply`: [`NORMAL_CHUNKS`], `response.completed` with usage   |
//! | `[tool-calls]`      | `tool_calls`: two `function_call` items, arguments in deltas  |
//! | `[content-filter]`  | `content_filter`: text, then `response.incomplete` (reason `content_filter`) |
//! | `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], then an `error` event |
//! | `[failed]`          | `failed`: [`MIDSTREAM_CHUNKS`], then `response.failed`        |
//! | `[rate-limit-once]` | `rate_limit` (429, `Retry-After: 1`) the first time, then `reply` |
//! | `[rate-limit]`      | `rate_limit_long_wait`: 429 with `Retry-After: 7`             |
//! | `[unauthorized]`    | `unauthorized`: 401 with OpenAI's invalid-key body            |
//!
//! A request whose second-to-last input item is the assistant text of a mid-stream
//! failure (a continuation of it) gets `continuation` ([`CONTINUATION_CHUNKS`]); one
//! whose last input item is a `function_call_output`, `reply`.

use crate::fake_openai::invalid_json;
use crate::fake_server::{Fake, Wire, roles_and_contents};
use axum::http::Method;
use axum::response::Response;
use serde_json::Value;

pub use crate::fake_server::{Behaviour, RecordedRequest};

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

/// The Responses API's wire format.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponsesWire;

/// The running fake. Stops when dropped.
pub type FakeOpenAiResponses = Fake<ResponsesWire>;

impl Wire for ResponsesWire {
    const FIXTURES: &'static str = "openai_responses";

    /// The API's paths start with `/v1`, which the `base_url` includes.
    fn base_path(&self) -> &'static str {
        "/v1"
    }

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/responses"
    }

    fn bad_json(&self, error: &serde_json::Error) -> Response {
        invalid_json(error)
    }

    /// `(role, content)` of every message item of `input` (function call items are
    /// left out).
    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        let items = body["input"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let messages: Vec<Value> = items
            .iter()
            .filter(|i| i.get("role").is_some())
            .cloned()
            .collect();
        roles_and_contents(&Value::Array(messages))
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        let input = body["input"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match input {
            [.., last] if last["type"] == "function_call_output" => Some(Behaviour::Normal),
            [.., before, _]
                if before["role"] == "assistant"
                    && before["content"] == MIDSTREAM_CHUNKS.concat().as_str() =>
            {
                Some(Behaviour::Continuation)
            }
            _ => None,
        }
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[
            ("[failed]", Behaviour::Failed),
            ("[rate-limit]", Behaviour::RateLimited),
        ]
    }
}
