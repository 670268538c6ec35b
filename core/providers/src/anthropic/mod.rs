//! Anthropic Messages API, streamed (or, for a whole reply, not).
//!
//! Request: `POST {base_url}/v1/messages` with the headers `x-api-key` and
//! `anthropic-version: 2023-06-01` and a body with `stream: true`. The system prompt is
//! the top-level `system` string (the API has no `system` role in `messages`), and
//! `messages` alternate user and assistant turns. `max_tokens` is required by the API:
//! Chorus sends the request's limit, else [`DEFAULT_MAX_TOKENS`] (a provider's
//! `params = { max_tokens = N }` replaces both).
//!
//! Response: server-sent events, each named like the `type` of its JSON data:
//! `message_start` (input usage), then per content block `content_block_start`, one or
//! more `content_block_delta` (`text_delta`, `thinking_delta`, `signature_delta`,
//! `input_json_delta`) and `content_block_stop`, then `message_delta` (stop reason and
//! cumulative usage) and `message_stop`. `ping` events may come at any time, `error`
//! events (e.g. `overloaded_error`) end the stream, and unknown event types are
//! ignored, as the API's versioning policy asks.
//!
//! Tools: `tools: [{name, description, input_schema}]` and `tool_choice` (`auto`,
//! `any`, `tool` with a name, `none`). An assistant's calls go back as `tool_use`
//! content blocks, results as `tool_result` blocks of a user message (consecutive
//! results, and a user text after them, share one message). A streamed `tool_use`
//! block sends its input as `input_json_delta` fragments; at `content_block_stop` the
//! concatenated JSON is parsed and the call emitted whole.
//!
//! A request for a whole reply ([`ChatRequest::whole_reply`]) goes with `stream:
//! false`; the one Message that answers it (its `content` blocks, `stop_reason` and
//! `usage`) becomes the events its stream would have given. A server that answers a
//! streaming request with one Message (LiteLLM's proxy does) is read the same way.
//!
//! Continuation uses the API's native assistant prefill: the partial reply is the
//! final assistant message and the model goes on from its last character.

use super::wire::{self, HttpSettings};
use super::{
    ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, ToolCall, ToolChoice, Usage,
};
use crate::config::ProviderConfig;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request sets no limit (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Extended thinking `budget_tokens` per reasoning effort (the API's minimum is 1024).
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort.trim().to_ascii_lowercase().as_str() {
        "low" | "minimal" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "" | "none" | "off" => None,
        other => {
            tracing::debug!(
                effort = other,
                "anthropic: unknown reasoning effort, sending no extended thinking"
            );
            None
        }
    }
}

pub struct AnthropicProvider {
    http: HttpSettings,
    /// The full `.../v1/messages` URL.
    url: String,
}

/// A request body and what the stream must drop to undo the prefill's trimming.
struct Prepared {
    body: Value,
    /// Whitespace trimmed off the end of the prefill (the API rejects a final assistant
    /// message that ends in whitespace). The partial reply already ends with it, so
    /// the continuation drops it from its start if the model emits it again.
    strip: String,
}

impl AnthropicProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        let http = HttpSettings::from_config(cfg, DEFAULT_BASE_URL);
        Self {
            url: messages_url(&http.base_url),
            http,
        }
    }

    fn prepare(&self, request: &ChatRequest) -> Prepared {
        let mut system: Vec<&str> = Vec::new();
        let mut messages: Vec<Turn> = Vec::new();
        for m in &request.messages {
            match m.role {
                ChatRole::System => {
                    if !m.content.trim().is_empty() {
                        system.push(&m.content);
                    }
                }
                ChatRole::User | ChatRole::Assistant => {
                    let role = if m.role == ChatRole::User {
                        "user"
                    } else {
                        "assistant"
                    };
                    if !m.content.trim().is_empty() {
                        push_text(&mut messages, role, &m.content);
                    } else if m.tool_calls.is_empty() {
                        // The API rejects empty text content.
                        tracing::debug!(role, "anthropic: dropping an empty message");
                    }
                    for call in &m.tool_calls {
                        push_block(
                            &mut messages,
                            "assistant",
                            json!({
                                "type": "tool_use",
                                "id": call.id,
                                "name": call.name,
                                "input": tool_input(&call.arguments),
                            }),
                        );
                    }
                }
                ChatRole::Tool => match &m.tool_call_id {
                    Some(id) => {
                        let mut block = json!({"type": "tool_result", "tool_use_id": id});
                        if !m.content.is_empty() {
                            block["content"] = json!(m.content);
                        }
                        if m.is_error {
                            block["is_error"] = json!(true);
                        }
                        push_block(&mut messages, "user", block);
                    }
                    None => {
                        tracing::debug!(
                            "anthropic: a tool result without a call id, sending it as user text"
                        );
                        if !m.content.trim().is_empty() {
                            push_text(&mut messages, "user", &m.content);
                        }
                    }
                },
            }
        }

        let mut strip = String::new();
        let prefill = request.prefill.as_deref().filter(|p| !p.is_empty());
        if let Some(partial) = prefill {
            let kept = partial.trim_end();
            strip = partial[kept.len()..].to_string();
            if !strip.is_empty() {
                tracing::debug!(
                    trimmed = strip.len(),
                    "anthropic: trimming trailing whitespace off the prefill; \
                     dropping it from the continuation if the model repeats it"
                );
            }
            if !kept.is_empty() {
                push_text(&mut messages, "assistant", kept);
            }
        } else if let Some(turn) = messages.last_mut()
            && turn.role == "assistant"
            && let Some(Value::Object(block)) = turn.blocks.last_mut()
            && block.get("type").and_then(Value::as_str) == Some("text")
            && let Some(Value::String(content)) = block.get_mut("text")
            && content.trim_end().len() != content.len()
        {
            // A history that ends with an assistant turn is a prefill to the API too.
            tracing::debug!("anthropic: trimming trailing whitespace off the last assistant turn");
            content.truncate(content.trim_end().len());
        }
        // Extended thinking in the middle of a tool loop needs the signed thinking
        // blocks of the assistant turn that made the calls, which Chorus does not keep.
        let mid_tool_loop = messages
            .iter()
            .rev()
            .take_while(|t| !t.has_user_text())
            .any(|t| t.role == "assistant" && t.has_tool_use());

        let messages: Vec<Value> = messages.into_iter().map(Turn::into_json).collect();
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
            "stream": !request.whole_reply,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = request.temperature {
            let clamped = t.clamp(0.0, 1.0);
            if clamped != t {
                tracing::debug!(
                    temperature = t,
                    sent = clamped,
                    "anthropic: clamping temperature to 0..=1"
                );
            }
            body["temperature"] = json!(clamped);
        }
        if let Some(p) = request.top_p {
            if request.temperature.is_some() {
                // Current models reject both ("cannot both be specified").
                tracing::debug!(
                    top_p = p,
                    "anthropic: dropping top_p, temperature is set and the API takes only one"
                );
            } else {
                body["top_p"] = json!(p);
            }
        }
        if !request.stop.is_empty() {
            body["stop_sequences"] = json!(request.stop);
        }
        if let Some(budget) = request
            .reasoning_effort
            .as_deref()
            .and_then(thinking_budget)
        {
            if prefill.is_some() {
                tracing::debug!(
                    "anthropic: extended thinking cannot be combined with an assistant prefill; \
                     continuing without thinking"
                );
            } else if mid_tool_loop {
                tracing::debug!(
                    "anthropic: the history ends in a tool loop whose thinking blocks are not \
                     kept; continuing without extended thinking"
                );
            } else {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
                if let Some(obj) = body.as_object_mut() {
                    if let Some(t) = obj.remove("temperature") {
                        tracing::debug!(
                            temperature = %t,
                            "anthropic: dropping temperature, the API rejects it with thinking"
                        );
                    }
                    if let Some(p) = obj.remove("top_p") {
                        tracing::debug!(
                            top_p = %p,
                            "anthropic: dropping top_p, the API rejects it with thinking"
                        );
                    }
                }
            }
        }
        add_tools(&mut body, request);
        // Configured extras pass through as they are, over the normalized fields.
        for (k, v) in &self.http.params {
            body[k] = v.clone();
        }
        raise_max_tokens_over_budget(&mut body);
        Prepared { body, strip }
    }
}

/// Thinking tokens count against `max_tokens`, which must exceed `budget_tokens`: when
/// it does not, the budget is added on top so the answer keeps the limit it asked for.
fn raise_max_tokens_over_budget(body: &mut Value) {
    let budget = body
        .pointer("/thinking/budget_tokens")
        .and_then(Value::as_u64);
    let max = body["max_tokens"].as_u64();
    if let (Some(budget), Some(max)) = (budget, max)
        && max <= budget
    {
        let raised = budget + max;
        tracing::debug!(
            max_tokens = max,
            budget_tokens = budget,
            sent = raised,
            "anthropic: raising max_tokens above the thinking budget"
        );
        body["max_tokens"] = json!(raised);
    }
}

/// `tools` and `tool_choice`. Extended thinking only allows `auto` and `none`.
fn add_tools(body: &mut Value, request: &ChatRequest) {
    if request.tools.is_empty() {
        if request.tool_choice.is_some() {
            tracing::debug!("anthropic: dropping tool_choice, no tools are offered");
        }
        return;
    }
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": input_schema(&t.parameters)});
            if !t.description.is_empty() {
                tool["description"] = json!(t.description);
            }
            tool
        })
        .collect();
    body["tools"] = Value::Array(tools);
    let thinking = body.get("thinking").is_some();
    let choice = match &request.tool_choice {
        None => return,
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Required | ToolChoice::Tool(_)) if thinking => {
            tracing::debug!(
                "anthropic: extended thinking only allows tool_choice auto or none; sending auto"
            );
            json!({"type": "auto"})
        }
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Tool(name)) => json!({"type": "tool", "name": name}),
    };
    body["tool_choice"] = choice;
}

/// A tool's parameters as the API's `input_schema`, which must be an object schema.
fn input_schema(parameters: &Value) -> Value {
    match parameters {
        Value::Object(map) if !map.is_empty() => {
            let mut schema = map.clone();
            schema.entry("type").or_insert_with(|| json!("object"));
            Value::Object(schema)
        }
        _ => json!({"type": "object", "properties": {}}),
    }
}

/// A tool call's arguments as a `tool_use` block's `input` (always an object).
fn tool_input(arguments: &Value) -> Value {
    match arguments {
        Value::Object(_) => arguments.clone(),
        Value::Null => json!({}),
        other => {
            tracing::debug!("anthropic: wrapping non-object tool arguments as {{\"value\": ...}}");
            json!({"value": other})
        }
    }
}

/// One message of the request: a role and its content blocks.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

impl Turn {
    fn has_user_text(&self) -> bool {
        self.role == "user" && self.blocks.iter().any(|b| b["type"] == "text")
    }

    fn has_tool_use(&self) -> bool {
        self.blocks.iter().any(|b| b["type"] == "tool_use")
    }

    /// A turn of one text block is sent as a plain string, anything else as blocks.
    fn into_json(self) -> Value {
        let content = match self.blocks.as_slice() {
            [block] if block["type"] == "text" => block["text"].clone(),
            _ => Value::Array(self.blocks),
        };
        json!({"role": self.role, "content": content})
    }
}

/// Appends text, joining it to the previous text of the same role's turn (the API
/// wants user and assistant turns to alternate).
fn push_text(messages: &mut Vec<Turn>, role: &'static str, content: &str) {
    if let Some(turn) = messages.last_mut()
        && turn.role == role
        && let Some(last) = turn.blocks.last_mut()
        && last["type"] == "text"
        && let Some(Value::String(text)) = last.get_mut("text")
    {
        text.push_str("\n\n");
        text.push_str(content);
        return;
    }
    push_block(messages, role, json!({"type": "text", "text": content}));
}

/// Appends a content block to the last turn when it has the same role, else to a new
/// turn. `tool_result` blocks go before any text of their user turn, as the API asks.
fn push_block(messages: &mut Vec<Turn>, role: &'static str, block: Value) {
    match messages.last_mut() {
        Some(turn) if turn.role == role => {
            if block["type"] == "tool_result" {
                let at = turn
                    .blocks
                    .iter()
                    .take_while(|b| b["type"] == "tool_result")
                    .count();
                turn.blocks.insert(at, block);
            } else {
                turn.blocks.push(block);
            }
        }
        _ => messages.push(Turn {
            role,
            blocks: vec![block],
        }),
    }
}

/// `{base}/v1/messages`, without doubling a `/v1` the base already ends with.
fn messages_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn answers_whole(&self) -> bool {
        true
    }

    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let Prepared { body, strip } = self.prepare(&request);
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = &self.http.api_key {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                ProviderError::new(
                    ProviderErrorKind::Auth,
                    "the API key is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        // Configured headers (e.g. `anthropic-beta`) replace the defaults of the same name.
        for (name, value) in &self.http.headers {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .zip(HeaderValue::from_str(value.expose()).ok());
            let Some((name, mut value)) = parsed else {
                return Err(ProviderError::new(
                    ProviderErrorKind::BadRequest,
                    format!("configured header {name:?} is not a valid HTTP header"),
                ));
            };
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let req = self
            .http
            .client
            .post(&self.url)
            .headers(headers)
            .json(&body);
        let wait = self.http.response_wait(request.whole_reply);
        let response = wire::send(req, wait).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.text().await.unwrap_or_default();
            let mut err = ProviderError::new(
                status_kind(status.as_u16()),
                error_message(status.as_u16(), &body),
            );
            err.retry_after = retry_after;
            return Err(err);
        }
        let whole = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        if whole {
            let events = whole_message(&wire::whole_body(response, wait).await?, strip)?;
            return Ok(futures::stream::iter(events.into_iter().map(Ok)).boxed());
        }
        Ok(wire::sse_stream(
            response,
            self.http.idle_timeout,
            EventParser::new(strip),
        ))
    }
}

mod events;
use events::*;

#[cfg(test)]
mod tests;
