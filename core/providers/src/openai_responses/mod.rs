//! The OpenAI Responses API, streamed (`kind = "openai_responses"`).
//!
//! Request: `POST {base_url}/responses` with `stream: true` and `store: false` (Chorus
//! keeps the history itself and resends it, so nothing is stored at OpenAI). System
//! messages become `instructions`; the rest of the history becomes `input` items:
//! messages, `function_call` items for the assistant's tool calls and
//! `function_call_output` items for their results.
//!
//! Response: server-sent events with semantic types (`response.output_text.delta`,
//! `response.function_call_arguments.delta`, ...). There is no `[DONE]`: the stream
//! ends with `response.completed`, `response.incomplete` or `response.failed`, whose
//! `response` carries the usage.

use super::wire::{self, HttpSettings};
use super::{
    ChatMessage, ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, ToolCall, ToolChoice, Usage,
};
use crate::config::ProviderConfig;
use serde_json::{Value, json};
use std::collections::VecDeque;

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The instruction that turns a partial assistant reply into a continuation (the
/// Responses API has no assistant prefill). The same words as the Chat Completions
/// provider's.
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

pub struct OpenAiResponsesProvider {
    http: HttpSettings,
}

impl OpenAiResponsesProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            http: HttpSettings::from_config(cfg, DEFAULT_BASE_URL),
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let instructions: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == ChatRole::System && !m.content.is_empty())
            .map(|m| m.content.as_str())
            .collect();
        let mut input: Vec<Value> = Vec::new();
        for m in request
            .messages
            .iter()
            .filter(|m| m.role != ChatRole::System)
        {
            push_input_items(m, &mut input);
        }
        if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
            input.push(json!({"role": "assistant", "content": partial}));
            input.push(json!({"role": "user", "content": CONTINUE_INSTRUCTION}));
        }
        let mut body = json!({
            "model": request.model,
            "input": input,
            "stream": true,
            "store": false,
        });
        if !instructions.is_empty() {
            body["instructions"] = json!(instructions.join("\n\n"));
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = request.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(max) = request.max_output_tokens {
            body["max_output_tokens"] = json!(max);
        }
        if let Some(effort) = &request.reasoning_effort {
            body["reasoning"] = json!({"effort": effort, "summary": "auto"});
        }
        if !request.stop.is_empty() {
            tracing::debug!(
                count = request.stop.len(),
                "openai_responses: the Responses API has no stop sequences; dropping them"
            );
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                        // Strict mode needs schemas MCP servers rarely satisfy
                        // (every property required, no additional properties).
                        "strict": false,
                    })
                })
                .collect();
            body["tools"] = json!(tools);
            if let Some(choice) = &request.tool_choice {
                body["tool_choice"] = match choice {
                    ToolChoice::Auto => json!("auto"),
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
                };
            }
        }
        // Configured extras pass through, over the normalized fields.
        if let Value::Object(map) = &mut body {
            wire::merge_json(map, &self.http.params);
        }
        body
    }
}

/// The `input` items of one (non-system) history message.
fn push_input_items(m: &ChatMessage, input: &mut Vec<Value>) {
    match m.role {
        ChatRole::System => input.push(json!({"role": "system", "content": m.content})),
        ChatRole::User => input.push(json!({"role": "user", "content": m.content})),
        ChatRole::Assistant => {
            if !m.content.is_empty() || m.tool_calls.is_empty() {
                input.push(json!({"role": "assistant", "content": m.content}));
            }
            for call in &m.tool_calls {
                input.push(json!({
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments.to_string(),
                }));
            }
        }
        ChatRole::Tool => input.push(json!({
            "type": "function_call_output",
            "call_id": m.tool_call_id.clone().unwrap_or_default(),
            "output": m.content,
        })),
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiResponsesProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/responses", self.http.base_url);
        let mut req = self.http.client.post(&url).json(&self.body(&request));
        if let Some(key) = &self.http.api_key {
            req = req.bearer_auth(key.expose());
        }
        let req = wire::with_headers(req, &self.http.headers);
        let response = wire::send(req, self.http.idle_timeout).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = wire::retry_after_header(response.headers());
            let body = response.text().await.unwrap_or_default();
            let mut err = ProviderError::new(
                wire::status_kind(status.as_u16()),
                error_message(status.as_u16(), &body),
            );
            err.retry_after = retry_after;
            return Err(err);
        }
        Ok(wire::sse_stream(
            response,
            self.http.idle_timeout,
            Parser::default(),
        ))
    }
}

impl wire::SseParser for Parser {
    const END: &'static str = "response.completed";

    fn parse(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<bool, ProviderError> {
        Parser::parse(self, data, out)
    }
}

/// A function call whose arguments are still streaming.
#[derive(Debug, Default)]
struct PendingCall {
    output_index: Option<u64>,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Turns the stream's events into [`ProviderEvent`]s, assembling function calls.
#[derive(Debug, Default)]
struct Parser {
    /// Function calls begun and not yet emitted, in the order they began.
    calls: Vec<PendingCall>,
    /// Whether any tool call was emitted.
    made_calls: bool,
}

impl Parser {
    /// Parses one event's data; returns `true` when it ended the response.
    fn parse(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<bool, ProviderError> {
        let event: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed event ({e}): {}", wire::truncate(data, 200)),
            )
        })?;
        let kind = event.get("type").and_then(Value::as_str).ok_or_else(|| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("event without a type: {}", wire::truncate(data, 200)),
            )
        })?;
        let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                let delta = text("delta");
                if !delta.is_empty() {
                    out.push_back(ProviderEvent::Text(delta.to_string()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let delta = text("delta");
                if !delta.is_empty() {
                    out.push_back(ProviderEvent::Reasoning(delta.to_string()));
                }
            }
            // Summary parts are paragraphs: keep them apart.
            "response.reasoning_summary_part.added"
                if event.get("summary_index").and_then(Value::as_u64) > Some(0) =>
            {
                out.push_back(ProviderEvent::Reasoning("\n\n".into()));
            }
            "response.output_item.added" => {
                let item = &event["item"];
                if item["type"] == "function_call" {
                    self.calls.push(PendingCall {
                        output_index: event.get("output_index").and_then(Value::as_u64),
                        item_id: str_of(item, "id"),
                        call_id: str_of(item, "call_id"),
                        name: str_of(item, "name"),
                        arguments: str_of(item, "arguments"),
                    });
                }
            }
            "response.function_call_arguments.delta" => {
                let call = self.call_for(&event)?;
                call.arguments.push_str(text("delta"));
            }
            "response.function_call_arguments.done" => {
                let full = text("arguments").to_string();
                let call = self.call_for(&event)?;
                call.arguments = full;
            }
            "response.output_item.done" => {
                let item = &event["item"];
                if item["type"] == "function_call" {
                    let position = self.position_of(&event);
                    let mut call = match position {
                        Some(i) => self.calls.remove(i),
                        None => PendingCall::default(),
                    };
                    // The finished item is authoritative where it says something.
                    for (field, slot) in [
                        ("call_id", &mut call.call_id),
                        ("name", &mut call.name),
                        ("arguments", &mut call.arguments),
                    ] {
                        let value = str_of(item, field);
                        if !value.is_empty() {
                            *slot = value;
                        }
                    }
                    if call.call_id.is_empty() {
                        call.call_id = str_of(item, "id");
                    }
                    self.emit(call, out)?;
                }
            }
            "response.completed" | "response.incomplete" => {
                // Calls whose `output_item.done` never came are complete by now.
                for call in std::mem::take(&mut self.calls) {
                    self.emit(call, out)?;
                }
                let response = &event["response"];
                if let Some(usage) = response.get("usage").filter(|u| u.is_object()) {
                    out.push_back(ProviderEvent::Usage(parse_usage(usage)));
                }
                let reason = if kind == "response.completed" {
                    if self.made_calls {
                        "tool_calls"
                    } else {
                        "stop"
                    }
                    .to_string()
                } else {
                    match response
                        .pointer("/incomplete_details/reason")
                        .and_then(Value::as_str)
                    {
                        Some("max_output_tokens") => "length".to_string(),
                        Some("content_filter") => "content_filter".to_string(),
                        Some(other) => other.to_string(),
                        None => "length".to_string(),
                    }
                };
                out.push_back(ProviderEvent::Finished(reason));
                return Ok(true);
            }
            "response.failed" => {
                let error = &event["response"]["error"];
                return Err(stream_error(
                    error.get("code").and_then(Value::as_str),
                    error.get("message").and_then(Value::as_str),
                ));
            }
            "error" => {
                // The documented shape has `code`/`message` at the top; some servers nest
                // them under `error`.
                let error = event
                    .get("error")
                    .filter(|e| e.is_object())
                    .unwrap_or(&event);
                return Err(stream_error(
                    error.get("code").and_then(Value::as_str),
                    error.get("message").and_then(Value::as_str),
                ));
            }
            // response.created, in_progress, content_part.*, output_text.done, ...
            _ => {}
        }
        Ok(false)
    }

    /// The index of the pending call an event is about: by `item_id`, else by
    /// `output_index`.
    fn position_of(&self, event: &Value) -> Option<usize> {
        let item_id = event
            .get("item_id")
            .and_then(Value::as_str)
            .or_else(|| event.pointer("/item/id").and_then(Value::as_str))
            .filter(|id| !id.is_empty());
        if let Some(id) = item_id
            && let Some(i) = self.calls.iter().position(|c| c.item_id == id)
        {
            return Some(i);
        }
        let index = event.get("output_index").and_then(Value::as_u64)?;
        self.calls
            .iter()
            .position(|c| c.output_index == Some(index))
    }

    fn call_for(&mut self, event: &Value) -> Result<&mut PendingCall, ProviderError> {
        match self.position_of(event) {
            Some(i) => Ok(&mut self.calls[i]),
            None => Err(ProviderError::new(
                ProviderErrorKind::Protocol,
                "function call arguments for a call that never began",
            )),
        }
    }

    fn emit(
        &mut self,
        call: PendingCall,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        let arguments = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.arguments).map_err(|e| {
                ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!(
                        "the arguments of tool call {} are not JSON ({e}): {}",
                        call.name,
                        wire::truncate(&call.arguments, 200)
                    ),
                )
            })?
        };
        if call.name.is_empty() {
            return Err(ProviderError::new(
                ProviderErrorKind::Protocol,
                "a function call without a name",
            ));
        }
        let id = if call.call_id.is_empty() {
            format!("call_{}", uuid::Uuid::new_v4().simple())
        } else {
            call.call_id
        };
        self.made_calls = true;
        out.push_back(ProviderEvent::ToolCall(ToolCall {
            id,
            name: call.name,
            arguments,
        }));
        Ok(())
    }
}

fn str_of(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The usage of a final `response`: input tokens include cached ones, output tokens
/// include reasoning ones.
fn parse_usage(usage: &Value) -> Usage {
    let n = |ptr: &str| usage.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n("/input_tokens"),
        completion_tokens: n("/output_tokens"),
        cached_prompt_tokens: n("/input_tokens_details/cached_tokens"),
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
        estimated: false,
    }
}

/// An error reported in the stream (`response.failed` or `error`), classified by its
/// code: rate limits and server errors may pass, anything else is the provider's word.
fn stream_error(code: Option<&str>, message: Option<&str>) -> ProviderError {
    let code = code.unwrap_or_default();
    let kind = if code.contains("rate_limit") {
        ProviderErrorKind::RateLimited
    } else if code == "server_error" || code.contains("overloaded") || code == "internal_error" {
        ProviderErrorKind::Server
    } else {
        ProviderErrorKind::Upstream
    };
    let message = match message.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None if !code.is_empty() => format!("the provider reported {code} mid-stream"),
        None => "the provider reported an error mid-stream".to_string(),
    };
    ProviderError::new(kind, message)
}

/// The provider's own message from an `{"error": {"message": ...}}` body, else the status.
fn error_message(status: u16, body: &str) -> String {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| wire::truncate(body, 300).to_string());
    format!("HTTP {status}: {detail}")
}

#[cfg(test)]
mod tests;
