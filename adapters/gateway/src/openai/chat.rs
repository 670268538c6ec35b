//! `POST /v1/chat/completions`: the request becomes a run of the key's account; its
//! reply is read from the run's journal and sent as one `chat.completion` or as a
//! stream of `chat.completion.chunk`s. Either way the response names the run in
//! `x-chorus-run-id`.

use super::OpenAiError;
use super::error::error_body;
use super::request::ChatCompletionRequest;
use super::response::{ChunkWriter, DONE, Envelope, completion, sse_data};
use crate::error::{ErrorKind, GatewayError, core_error};
use crate::reply::{self, Follow, ReplyEvent, ReplyUsage};
use crate::{GatewayState, RUN_ID_HEADER, auth};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chorus_core::telemetry::timing;
use chorus_model::ids::RunId;

pub async fn completions(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match timing::timed("chat_completions", handle(&state, &headers, &body)).await {
        Ok(response) => response,
        Err(e) => OpenAiError(e).into_response(),
    }
}

async fn handle(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let account = auth::account(&state.core, headers).await?;
    timing::mark("auth");
    let request: ChatCompletionRequest = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid("body", format!("malformed request body: {e}")))?;
    let streaming = request.stream;
    let include_usage = request.include_usage();
    let model = request.model.clone();
    let run = state
        .core
        .start_gateway_run(
            &account,
            request.into_gateway()?,
            state.config.run_options(),
        )
        .await
        .map_err(|e| core_error(&state.core, e))?;
    let follow = Follow::start(
        &state.core,
        &account,
        &run,
        state.config.cancel_on_disconnect,
        state.shutdown.clone(),
    );
    timing::mark("follow");
    let id = format!("chatcmpl-{}", run.run_id);
    let created = now_secs();
    let mut response = if streaming {
        stream(
            follow,
            id,
            created,
            model,
            include_usage,
            run.run_id.clone(),
        )
    } else {
        let reply = follow.collect().await;
        let end = reply.end.clone().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "the server is shutting down; read the reply from /api/runs/{}/events",
                    run.run_id
                ),
            )
        })?;
        if let Some(failure) = end.failure(&run.run_id) {
            return Err(failure);
        }
        let env = Envelope {
            id: &id,
            created,
            model: &model,
        };
        Json(completion(&env, &reply, &end)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&run.run_id.to_string()) {
        response.headers_mut().insert(RUN_ID_HEADER, v);
    }
    // Streaming: the response's head; otherwise the whole reply.
    timing::mark("respond");
    Ok(response)
}

/// What a streaming response has sent so far.
struct Streaming {
    follow: Follow,
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    run: RunId,
    usage: ReplyUsage,
    tool_calls: usize,
    started: bool,
    done: bool,
}

impl Streaming {
    fn writer(&self) -> ChunkWriter<'_> {
        ChunkWriter {
            env: Envelope {
                id: &self.id,
                created: self.created,
                model: &self.model,
            },
            include_usage: self.include_usage,
        }
    }
}

impl reply::Pieces for Streaming {
    /// The next piece of the body; `None` at its end.
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(self.writer().role());
        }
        loop {
            let Some(event) = self.follow.next().await else {
                self.done = true;
                return None;
            };
            return Some(match event {
                ReplyEvent::Text(t) => self.writer().text(&t),
                ReplyEvent::Reasoning(t) => self.writer().reasoning(&t),
                ReplyEvent::ToolCall(call) => {
                    self.tool_calls += 1;
                    self.writer().tool_call(self.tool_calls - 1, &call)
                }
                ReplyEvent::Usage(u) => {
                    self.usage = reply::add(self.usage, u);
                    continue;
                }
                ReplyEvent::End(end) => {
                    self.done = true;
                    if let Some(failure) = end.failure(&self.run) {
                        return Some(sse_data(&error_body(&failure).to_string()));
                    }
                    let mut tail = self.writer().finish(&end);
                    if self.include_usage {
                        tail.push_str(&self.writer().usage(&self.usage));
                    }
                    tail.push_str(DONE);
                    tail
                }
            });
        }
    }
}

fn stream(
    follow: Follow,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    run: RunId,
) -> Response {
    let state = Streaming {
        follow,
        id,
        model,
        created,
        include_usage,
        run,
        usage: ReplyUsage::default(),
        tool_calls: 0,
        started: false,
        done: false,
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        reply::body(state),
    )
        .into_response()
}

/// Seconds since the Unix epoch, OpenAI's `created`.
pub(crate) fn now_secs() -> i64 {
    chorus_model::time::now_ms() / 1000
}
