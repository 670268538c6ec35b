//! The fake's Web API: `POST /api/METHOD` with a JSON body and a bearer token, as
//! slack-morphism sends them, answered in Slack's envelope (`ok`, `error`).

use super::{APP_TOKEN, BOT_TOKEN, BOT_USER, Call, Ephemeral, Fault, Message, Shared, State, TEAM};
use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// What Slack renders of `markdown` blocks in one message, in characters.
pub const MAX_MARKDOWN_CHARS: usize = 12_000;
/// Characters of `markdown_text` one streaming call may carry.
pub const MAX_STREAM_CHARS: usize = 12_000;
/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/{method}", get(call).post(call))
        .with_state(shared)
}

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    axum::Json(body).into_response()
}

fn error(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}

async fn call(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let response = {
        let mut state = shared.lock();
        state.calls.push(Call {
            at: Instant::now(),
            method: method.clone(),
            body: body.clone(),
        });
        let wanted = if method == "apps.connections.open" {
            APP_TOKEN
        } else {
            BOT_TOKEN
        };
        if token.is_empty() {
            error("not_authed")
        } else if token != wanted {
            error("invalid_auth")
        } else if let Some(i) = state.faults.iter().position(|(m, _)| *m == method) {
            let (_, fault) = state.faults.remove(i).expect("a fault at its index");
            match fault {
                Fault::Error(code) => error(&code),
                Fault::RateLimited { retry_after_secs } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after_secs.to_string())],
                    axum::Json(json!({"ok": false, "error": "ratelimited"})),
                )
                    .into_response(),
            }
        } else {
            let ws = shared
                .ws_addr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expect("the socket server is up");
            answer(&mut state, &method, &body, &ws.to_string())
        }
    };
    shared.changed();
    response
}

fn answer(state: &mut State, method: &str, body: &Value, ws: &str) -> Response {
    let s = |field: &str| body[field].as_str().map(str::to_string);
    match method {
        "auth.test" => ok(json!({
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "chorus",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": "B0CHORUS1",
        })),
        "apps.connections.open" => {
            let ticket = state.connections + 1;
            ok(json!({ "url": format!("ws://{ws}/link/?ticket=fake-{ticket}") }))
        }
        "chat.postMessage" => {
            let Some(channel) = s("channel") else {
                return error("channel_not_found");
            };
            let (text, buttons) = match rendered(body) {
                Ok(r) => r,
                Err(code) => return error(code),
            };
            let ts = state.new_ts();
            state.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: s("thread_ts"),
                text: text.clone(),
                buttons,
                edits: 0,
                streaming: false,
                streamed: false,
            });
            ok(json!({
                "channel": channel,
                "ts": ts,
                "message": {"type": "message", "user": BOT_USER, "bot_id": "B0CHORUS1", "text": body["text"], "ts": ts},
            }))
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (s("channel"), s("ts")) else {
                return error("message_not_found");
            };
            let (text, buttons) = match rendered(body) {
                Ok(r) => r,
                Err(code) => return error(code),
            };
            let Some(message) = state
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return error("message_not_found");
            };
            // A message being streamed changes through the stream only.
            if message.streaming {
                return error("cant_update_message");
            }
            message.text = text;
            message.buttons = buttons;
            message.edits += 1;
            ok(json!({
                "channel": channel,
                "ts": ts,
                "text": body["text"],
                "message": {"type": "message", "user": BOT_USER, "bot_id": "B0CHORUS1", "text": body["text"], "ts": ts},
            }))
        }
        "chat.postEphemeral" => {
            let (Some(channel), Some(user)) = (s("channel"), s("user")) else {
                return error("user_not_in_channel");
            };
            let (text, _) = match rendered(body) {
                Ok(r) => r,
                Err(code) => return error(code),
            };
            state.ephemerals.push(Ephemeral {
                channel,
                user,
                thread_ts: s("thread_ts"),
                text,
            });
            let ts = state.new_ts();
            ok(json!({"message_ts": ts}))
        }
        "chat.startStream" => {
            let (Some(channel), Some(thread_ts)) = (s("channel"), s("thread_ts")) else {
                return error("invalid_arguments");
            };
            // The text comes as `markdown_text` or as chunks (text and blocks).
            let mut text = s("markdown_text").unwrap_or_default();
            let mut buttons = Vec::new();
            for chunk in body["chunks"].as_array().into_iter().flatten() {
                match chunk["type"].as_str() {
                    Some("markdown_text") => {
                        text.push_str(chunk["text"].as_str().unwrap_or_default())
                    }
                    Some("blocks") => match rendered(&json!({"blocks": chunk["blocks"]})) {
                        Ok((t, b)) => {
                            text.push_str(&t);
                            buttons.extend(b);
                        }
                        Err(code) => return error(code),
                    },
                    _ => return error("invalid_chunks"),
                }
            }
            if text.chars().count() > MAX_STREAM_CHARS {
                return error("msg_too_long");
            }
            let ts = state.new_ts();
            state.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: Some(thread_ts),
                text,
                buttons,
                edits: 0,
                streaming: true,
                streamed: true,
            });
            ok(json!({"channel": channel, "ts": ts}))
        }
        "chat.appendStream" | "chat.stopStream" => {
            let (Some(channel), Some(ts)) = (s("channel"), s("ts")) else {
                return error("invalid_arguments");
            };
            let delta = s("markdown_text").unwrap_or_default();
            if delta.chars().count() > MAX_STREAM_CHARS {
                return error("msg_too_long");
            }
            if method == "chat.appendStream" && delta.is_empty() {
                return error("invalid_arguments");
            }
            let buttons = match body["blocks"].as_array() {
                Some(blocks) => match rendered(&json!({"blocks": blocks})) {
                    Ok((_, buttons)) => Some(buttons),
                    Err(code) => return error(code),
                },
                None => None,
            };
            let Some(message) = state
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return error("message_not_found");
            };
            if !message.streaming {
                return error("message_not_in_streaming_state");
            }
            if message.text.chars().count() + delta.chars().count() > MAX_MARKDOWN_CHARS {
                return error("msg_too_long");
            }
            message.text.push_str(&delta);
            message.edits += 1;
            if method == "chat.stopStream" {
                message.streaming = false;
                message.buttons = buttons.unwrap_or_default();
            }
            ok(json!({"channel": channel, "ts": ts}))
        }
        "assistant.threads.setStatus"
        | "assistant.threads.setSuggestedPrompts"
        | "assistant.threads.setTitle" => {
            if s("channel_id").is_none() || s("thread_ts").is_none() {
                return error("invalid_arguments");
            }
            ok(json!({}))
        }
        _ => error("unknown_method"),
    }
}

/// The text of a message's `markdown` blocks (or its `text` without blocks) and its
/// buttons, or the error Slack gives a message it will not show.
fn rendered(body: &Value) -> Result<(String, Vec<String>), &'static str> {
    let Some(blocks) = body["blocks"].as_array() else {
        return match body["text"].as_str() {
            Some(text) if !text.is_empty() => Ok((text.to_string(), Vec::new())),
            _ => Err("no_text"),
        };
    };
    if blocks.len() > MAX_BLOCKS {
        return Err("invalid_blocks");
    }
    let mut text = String::new();
    let mut buttons = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("markdown") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("actions") => buttons.extend(
                block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["type"] == "button")
                    .filter_map(|e| e["action_id"].as_str().map(str::to_string)),
            ),
            _ => return Err("invalid_blocks"),
        }
    }
    if text.chars().count() > MAX_MARKDOWN_CHARS {
        return Err("invalid_blocks");
    }
    Ok((text, buttons))
}
