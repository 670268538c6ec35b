//! Fake OpenAI (Chat Completions) and Anthropic (Messages) servers whose model calls
//! a tool, in each API's documented streaming wire format, on `127.0.0.1:0`.
//!
//! A request whose last user message reads `call TOOL {JSON}` and carries no tool
//! result yet gets a streamed call of `TOOL` with those arguments (the arguments split
//! over several fragments, as both APIs stream them) and finish reason
//! `tool_calls` / `tool_use`. A request carrying a tool result gets the text
//! `The tool said: RESULT`. Every request body is recorded, so a test can check how
//! the calls and results were sent back.

use crate::fake_server::{FakeServer, Recorder, sse_data, sse_event, streaming_response, unix_now};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

/// Which API the fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolWire {
    OpenAi,
    Anthropic,
}

/// The running fake. Stops when dropped.
pub struct FakeToolModel {
    server: FakeServer,
    requests: Recorder<Value>,
    wire: ToolWire,
}

impl FakeToolModel {
    pub async fn start(wire: ToolWire) -> anyhow::Result<Self> {
        let requests = Recorder::default();
        let app = match wire {
            ToolWire::OpenAi => Router::new().route("/v1/chat/completions", post(openai)),
            ToolWire::Anthropic => Router::new().route("/v1/messages", post(anthropic)),
        }
        .with_state(requests.clone());
        Ok(Self {
            server: FakeServer::spawn(app).await?,
            requests,
            wire,
        })
    }

    /// The `base_url` to configure.
    pub fn base_url(&self) -> String {
        match self.wire {
            ToolWire::OpenAi => self.server.url("/v1"),
            ToolWire::Anthropic => self.server.url(""),
        }
    }

    /// Every request body received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.all()
    }
}

/// `call TOOL {JSON}` in the last user text, if any.
fn wanted_call(last_user_text: &str) -> Option<(String, String)> {
    let rest = last_user_text.trim().strip_prefix("call ")?;
    let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
    Some((name.to_string(), args.to_string()))
}

/// The arguments JSON in three fragments, as APIs stream them.
fn fragments(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    let third = chars.len().div_ceil(3).max(1);
    chars.chunks(third).map(|c| c.iter().collect()).collect()
}

fn sse_body(events: Vec<Bytes>) -> Response {
    let stream = futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>));
    streaming_response("text/event-stream", &[], Body::from_stream(stream))
}

async fn openai(State(requests): State<Recorder<Value>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.push(body.clone());
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
    let chunk = |delta: Value, finish: Value| {
        sse_data(json!({
            "id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": unix_now(),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let result = messages.iter().rev().find(|m| m["role"] == "tool");
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let mut events = Vec::new();
    match (result, wanted_call(last_user)) {
        (None, Some((name, args))) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for part in fragments(&args) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        (result, _) => {
            let said = result
                .and_then(|r| r["content"].as_str())
                .unwrap_or("nothing");
            events.push(chunk(
                json!({"role": "assistant", "content": "The tool said: "}),
                Value::Null,
            ));
            events.push(chunk(json!({"content": said}), Value::Null));
            events.push(chunk(json!({}), json!("stop")));
        }
    }
    events.push(sse_data(json!({
        "id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": unix_now(),
        "model": model, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
    })));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_body(events)
}

async fn anthropic(State(requests): State<Recorder<Value>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.push(body.clone());
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let model = body["model"].as_str().unwrap_or("claude").to_string();
    let blocks = |m: &Value| -> Vec<Value> {
        match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => vec![],
        }
    };
    let last_user = messages.iter().rev().find(|m| m["role"] == "user");
    let user_blocks = last_user.map(blocks).unwrap_or_default();
    let result = user_blocks
        .iter()
        .find(|b| b["type"] == "tool_result")
        .cloned();
    let text = user_blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("");
    let mut events = vec![sse_event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 30, "output_tokens": 1}}}),
    )];
    let stop_reason = match (result, wanted_call(&text)) {
        (None, Some((name, args))) => {
            events.push(sse_event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}}),
            ));
            for part in fragments(&args) {
                events.push(sse_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            "tool_use"
        }
        (result, _) => {
            let said = match result.as_ref().map(|r| &r["content"]) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a.iter().filter_map(|b| b["text"].as_str()).collect(),
                _ => "nothing".into(),
            };
            events.push(sse_event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for t in ["The tool said: ", said.as_str()] {
                events.push(sse_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            "end_turn"
        }
    };
    events.push(sse_event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(sse_event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 9}}),
    ));
    events.push(sse_event("message_stop", json!({"type": "message_stop"})));
    sse_body(events)
}
