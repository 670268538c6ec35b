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
//!
//! A fresh question can ask for a fault by a marker in its text: `[fail]` streams the
//! first half of the script, then the error event OpenAI sends mid-stream
//! ([`MIDSTREAM_ERROR`]); `[hold]` streams the first half, then waits until the test
//! calls [`FakeScriptModel::release_holds`] before the rest (a reply that is certainly
//! still streaming while the test looks at it, without racing a clock).

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
use tokio::sync::watch;

/// The message of the error event a `[fail]` question gets mid-stream (OpenAI's).
pub const MIDSTREAM_ERROR: &str = "The server had an error while processing your request.";

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
    /// `true` once held replies may go on.
    released: watch::Sender<bool>,
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
            released: watch::Sender::new(false),
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

    /// Lets every `[hold]` reply, held now or later, go on with the rest.
    pub fn release_holds(&self) {
        self.shared.released.send_replace(true);
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
    // What a fresh question asked for: a fault half way through, or a hold there.
    let question = messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let fault = match continues {
        None if question.contains("[fail]") => Fault::Fail(count / 2),
        None if question.contains("[hold]") => Fault::Hold(count / 2),
        _ => Fault::None,
    };
    let mut frames: Vec<Bytes> = pieces
        .iter()
        .map(|p| chunk(json!({"role": "assistant", "content": p}), Value::Null))
        .collect();
    if let Fault::Fail(at) = fault {
        frames.truncate(at);
        frames.push(sse_data(json!({
            "error": {"message": MIDSTREAM_ERROR, "type": "server_error"}
        })));
    } else {
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
    }
    let hold_at = match fault {
        Fault::Hold(at) => Some(at),
        _ => None,
    };
    let body = paced_held_stream(
        frames,
        move |i| if i < count { pace } else { Duration::ZERO },
        hold_at.map(|at| (at, shared.released.subscribe())),
    );
    streaming_response("text/event-stream", &[("cache-control", "no-cache")], body)
}

/// A fault a question asked for, at a piece index.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Fail(usize),
    Hold(usize),
}

/// [`paced_stream`], except that with `hold` = (index, release), the frame at that
/// index waits until `release` says `true`.
fn paced_held_stream(
    frames: Vec<Bytes>,
    pause: impl Fn(usize) -> Duration + Send + Sync + 'static,
    hold: Option<(usize, watch::Receiver<bool>)>,
) -> axum::body::Body {
    let Some((at, released)) = hold else {
        return paced_stream(frames, pause, None);
    };
    let stream = futures::stream::unfold(
        (frames.into_iter(), 0usize, released),
        move |(mut frames, n, mut released)| {
            let pause = pause(n);
            async move {
                let frame = frames.next()?;
                if n == at {
                    // A sender dropped (the fake stopped) ends the wait too.
                    let _ = released.wait_for(|r| *r).await;
                }
                tokio::time::sleep(pause).await;
                Some((
                    Ok::<_, std::convert::Infallible>(frame),
                    (frames, n + 1, released),
                ))
            }
        },
    );
    axum::body::Body::from_stream(stream)
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
