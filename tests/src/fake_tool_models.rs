//! Fake OpenAI (Chat Completions) and Anthropic (Messages) servers whose model calls
//! a tool, in each API's documented streaming wire format, on `127.0.0.1:0`.
//!
//! A request whose last user message reads `call TOOL {JSON}` and carries no tool
//! result yet gets a streamed call of `TOOL` with those arguments (the arguments split
//! over several fragments, as both APIs stream them) and finish reason
//! `tool_calls` / `tool_use`. A request carrying a tool result gets the text
//! `The tool said: RESULT`. Both replies are built in code; routing and recording are
//! [`Fake`]'s, so a test can check how the calls and results were sent back. A
//! request that does not ask to stream gets the same reply whole (a
//! `chat.completion`, a Message), as each API answers it.

use crate::fake_server::{
    Behaviour, Fake, RecordedRequest, Wire, roles_and_contents, sse_data, sse_event,
    streaming_response, unix_now,
};
use axum::body::Body;
use axum::http::Method;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

/// Which API the fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolWire {
    OpenAi,
    Anthropic,
}

/// The running fake. Stops when dropped.
pub type FakeToolModel = Fake<ToolWire>;

impl Fake<ToolWire> {
    pub async fn start(wire: ToolWire) -> anyhow::Result<Self> {
        Self::serve(wire).await
    }
}

/// The content blocks of an Anthropic message (a string is one text block).
fn blocks(m: &Value) -> Vec<Value> {
    match &m["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        _ => vec![],
    }
}

/// The text blocks of an Anthropic message, joined.
fn block_text(m: &Value) -> String {
    blocks(m)
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect()
}

impl ToolWire {
    /// The tool result the request carries for the model, if any: the last `tool`
    /// message (OpenAI), a `tool_result` block of the last user message (Anthropic).
    fn result(self, body: &Value) -> Option<Value> {
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match self {
            ToolWire::OpenAi => messages.iter().rev().find(|m| m["role"] == "tool").cloned(),
            ToolWire::Anthropic => {
                let last_user = messages.iter().rev().find(|m| m["role"] == "user")?;
                blocks(last_user)
                    .into_iter()
                    .find(|b| b["type"] == "tool_result")
            }
        }
    }
}

impl Wire for ToolWire {
    const FIXTURES: &'static str = "tool_models";

    fn base_path(&self) -> &'static str {
        match self {
            ToolWire::OpenAi => "/v1",
            ToolWire::Anthropic => "",
        }
    }

    fn is_call(&self, method: &Method, path: &str) -> bool {
        let call = match self {
            ToolWire::OpenAi => "/v1/chat/completions",
            ToolWire::Anthropic => "/v1/messages",
        };
        method == Method::POST && path == call
    }

    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        match self {
            ToolWire::OpenAi => roles_and_contents(&body["messages"]),
            ToolWire::Anthropic => body["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or_default().to_string(),
                        block_text(m),
                    )
                })
                .collect(),
        }
    }

    /// A call while the request asks for one and carries no result yet; else the
    /// answer.
    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        let turns = self.turns(body);
        let last_user = turns.iter().rev().find(|(role, _)| role == "user");
        let asks = last_user.is_some_and(|(_, text)| wanted_call(text).is_some());
        Some(if asks && self.result(body).is_none() {
            Behaviour::ToolCalls
        } else {
            Behaviour::Normal
        })
    }

    fn whole(&self) -> Option<fn(&str) -> Response> {
        Some(match self {
            ToolWire::OpenAi => crate::fake_openai::chat_completion,
            ToolWire::Anthropic => crate::fake_anthropic::message,
        })
    }

    fn build(&self, behaviour: Behaviour, request: &RecordedRequest) -> Option<Response> {
        let call = match behaviour {
            Behaviour::ToolCalls => wanted_call(request.last_user_text()),
            _ => None,
        };
        let result = self.result(&request.body);
        Some(match self {
            ToolWire::OpenAi => openai(&request.body, call, result),
            ToolWire::Anthropic => anthropic(&request.body, call, result),
        })
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

/// The OpenAI stream: a call of `call`, or the text of `result`.
fn openai(body: &Value, call: Option<(String, String)>, result: Option<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
    let chunk = |delta: Value, finish: Value| {
        sse_data(json!({
            "id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": unix_now(),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let mut events = Vec::new();
    match call {
        Some((name, args)) => {
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
        None => {
            let said = result
                .as_ref()
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

/// The Anthropic stream: a `tool_use` block calling `call`, or the text of `result`.
fn anthropic(body: &Value, call: Option<(String, String)>, result: Option<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("claude").to_string();
    let mut events = vec![sse_event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 30, "output_tokens": 1}}}),
    )];
    let stop_reason = match call {
        Some((name, args)) => {
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
        None => {
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
