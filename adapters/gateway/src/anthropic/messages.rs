//! `POST /v1/messages`: the request becomes a run of the key's account; its reply
//! is read from the run's journal and sent as one `message` or as Anthropic's stream
//! of events. The response names the run in `x-chorus-run-id`.

use super::AnthropicError;
use super::error::error_body;
use super::request::MessagesRequest;
use super::response::{Blocks, event, message, message_end, message_start};
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

pub async fn create(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match timing::timed("messages", handle(&state, &headers, &body)).await {
        Ok(response) => response,
        Err(e) => AnthropicError(e).into_response(),
    }
}

async fn handle(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let account = auth::account(&state.core, headers).await?;
    timing::mark("auth");
    let request: MessagesRequest = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid("body", format!("malformed request body: {e}")))?;
    let streaming = request.stream;
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
    let id = format!("msg_{}", run.run_id.to_string().replace('-', ""));
    let mut response = if streaming {
        stream(follow, id, model, run.run_id.clone())
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
        Json(message(&id, &model, &reply, &end)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&run.run_id.to_string()) {
        response.headers_mut().insert(RUN_ID_HEADER, v);
    }
    // Streaming: the response's head; otherwise the whole reply.
    timing::mark("respond");
    Ok(response)
}

struct Streaming {
    follow: Follow,
    id: String,
    model: String,
    run: RunId,
    usage: ReplyUsage,
    blocks: Blocks,
    started: bool,
    done: bool,
}

impl reply::Pieces for Streaming {
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(message_start(&self.id, &self.model));
        }
        loop {
            let Some(event_) = self.follow.next().await else {
                self.done = true;
                return None;
            };
            let mut out = String::new();
            match event_ {
                ReplyEvent::Text(t) => self.blocks.text(&t, &mut out),
                ReplyEvent::ToolCall(call) => self.blocks.tool_use(&call, &mut out),
                ReplyEvent::Usage(u) => {
                    self.usage = reply::add(self.usage, u);
                    continue;
                }
                // Thinking blocks need Anthropic's signatures: reasoning stays in the
                // run's journal only.
                ReplyEvent::Reasoning(_) => continue,
                ReplyEvent::End(end) => {
                    self.done = true;
                    if let Some(failure) = end.failure(&self.run) {
                        return Some(event("error", &error_body(&failure)));
                    }
                    self.blocks.close(&mut out);
                    out.push_str(&message_end(&end, &self.usage));
                }
            }
            return Some(out);
        }
    }
}

fn stream(follow: Follow, id: String, model: String, run: RunId) -> Response {
    let state = Streaming {
        follow,
        id,
        model,
        run,
        usage: ReplyUsage::default(),
        blocks: Blocks::default(),
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
