//! A fake OpenAI-compatible model that streams a fixed script and continues it from
//! wherever a reply was cut off, for tests where the reply must be in flight when
//! something dies (the compose deployment's test kills the instance running it).
//!
//! `POST /v1/chat/completions` (streaming, Bearer key checked) answers a fresh
//! question with the script one piece at a time, a piece every `pace`; a continuation
//! — the history ending with an assistant turn holding the partial reply, then the
//! instruction to go on, as Chorus sends it to Chat Completions APIs — gets the rest of
//! the script after that partial text, a piece every `continuation_pace`. A partial
//! text that is not a prefix of the script is refused (400), so a test sees it.
//! The pieces are the script's words with the spaces after them, so any lost,
//! repeated or reordered piece changes the text.

use crate::fake_http::{FakeServer, paced_stream, sse_data, streaming_response};
use crate::fake_server::{Recorder, unix_now};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the fake received: the assistant text a request asked it to continue
/// (`None` for a fresh question).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptRequest {
    pub continues: Option<String>,
}

struct Shared {
    script: String,
    api_key: String,
    pace: Duration,
    continuation_pace: Duration,
    requests: Recorder<ScriptRequest>,
}

/// The running fake. Stops when dropped.
pub struct FakeScriptModel {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl FakeScriptModel {
    /// Serves on `addr` (port 0: a free one) the model that replies `script`.
    pub async fn spawn(
        addr: SocketAddr,
        script: &str,
        api_key: &str,
        pace: Duration,
        continuation_pace: Duration,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            script: script.to_string(),
            api_key: api_key.to_string(),
            pace,
            continuation_pace,
            requests: Recorder::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let server = FakeServer::spawn_on(addr, app).await?;
        Ok(Self { server, shared })
    }

    /// The `base_url` of an `openai` provider: `http://ADDRESS:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.server.url("/v1")
    }

    /// Every model call so far, in order.
    pub fn requests(&self) -> Vec<ScriptRequest> {
        self.shared.requests.all()
    }
}

/// The script cut into the pieces it streams: each word with the whitespace after it.
pub fn pieces(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in script.chars() {
        if !c.is_whitespace() && current.ends_with(char::is_whitespace) {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = format!("Bearer {}", shared.api_key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.".into(),
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    if body["stream"] != true {
        return error(StatusCode::BAD_REQUEST, "this fake only streams".into());
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    // [..., assistant: partial, user: "continue"] is a continuation of `partial`.
    let continues = match &messages[..] {
        [.., before, last] if before["role"] == "assistant" && last["role"] == "user" => {
            Some(before["content"].as_str().unwrap_or_default().to_string())
        }
        _ => None,
    };
    shared.requests.push(ScriptRequest {
        continues: continues.clone(),
    });
    let (rest, pace) = match &continues {
        None => (shared.script.as_str(), shared.pace),
        Some(partial) => match shared.script.strip_prefix(partial.as_str()) {
            Some(rest) => (rest, shared.continuation_pace),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("asked to continue {partial:?}, which does not start the script"),
                );
            }
        },
    };
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let chunk = |delta: Value, finish: Value| {
        sse_data(json!({
            "id": "chatcmpl-script",
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let pieces = pieces(rest);
    let count = pieces.len();
    let mut frames: Vec<Bytes> = pieces
        .iter()
        .map(|p| chunk(json!({"role": "assistant", "content": p}), Value::Null))
        .collect();
    frames.push(chunk(json!({}), json!("stop")));
    frames.push(sse_data(json!({
        "id": "chatcmpl-script",
        "object": "chat.completion.chunk",
        "created": unix_now(),
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count},
    })));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let body = paced_stream(
        frames,
        move |i| if i < count { pace } else { Duration::ZERO },
        None,
    );
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_keep_every_character() {
        let script = crate::script(40);
        let cut = pieces(&script);
        assert_eq!(cut.concat(), script);
        assert!(cut.len() >= 40, "{cut:?}");
        assert_eq!(pieces("a  b\n\nc"), ["a  ", "b\n\n", "c"]);
    }
}
