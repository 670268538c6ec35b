//! Google Gemini (the Gemini API's `generateContent`), streamed.
//!
//! Request: `POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse` with the
//! key in `x-goog-api-key`. The body has `contents` (roles `user` and `model`, each with
//! `parts: [{text}]`), `systemInstruction` and `generationConfig`.
//!
//! Response: server-sent events whose data is a `GenerateContentResponse`. Text is in
//! `candidates[0].content.parts[].text` (a part with `thought: true` is a thought
//! summary); the last chunk carries `candidates[0].finishReason` and `usageMetadata`.
//! There is no `[DONE]`: the stream just ends. A prompt the API refuses comes back as
//! a chunk with `promptFeedback.blockReason` and no candidates.
//!
//! Tools: `tools: [{functionDeclarations}]` whose `parameters` are JSON Schema reduced
//! to the API's OpenAPI subset, and `toolConfig.functionCallingConfig` (`AUTO`, `ANY`
//! with `allowedFunctionNames`, `NONE`). Calls are `functionCall` parts of a `model`
//! turn, results `functionResponse` parts (keyed by tool name, `response.output` or
//! `response.error`) of a `user` turn. Streamed `functionCall` parts arrive whole; the
//! API rarely sends ids, so calls without one get `call_<n>`. A reply of calls ends
//! with `STOP`, normalized to `tool_calls`.
//!
//! A safety block is not a failure: the run ends with finish reason `content_filter`
//! and whatever text came before it, so the user sees why the reply stopped.

use super::wire::{self, HttpSettings, truncate};
use super::{
    ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, ToolCall, ToolChoice, Usage,
};
use crate::config::ProviderConfig;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The API takes at most five stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

/// The instruction that turns a partial reply into a continuation (Gemini has no
/// assistant prefill).
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

pub struct GeminiProvider {
    http: HttpSettings,
}

impl GeminiProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            http: HttpSettings::from_config(cfg, DEFAULT_BASE_URL),
        }
    }

    fn url(&self, model: &str) -> String {
        // Accept both `gemini-2.5-flash` and the API's own `models/gemini-2.5-flash`.
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!(
            "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self.http.base_url
        )
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut system: Vec<Value> = Vec::new();
        let mut contents: Vec<Value> = Vec::new();
        // Call ids to tool names, for results that do not name their tool.
        let mut names: std::collections::HashMap<&str, &str> = Default::default();
        for m in &request.messages {
            match m.role {
                // The API rejects empty parts.
                ChatRole::System if !m.content.is_empty() => {
                    system.push(json!({"text": m.content}));
                }
                ChatRole::User if !m.content.is_empty() => {
                    push_turn(&mut contents, "user", &m.content);
                }
                ChatRole::Assistant => {
                    if !m.content.is_empty() {
                        push_turn(&mut contents, "model", &m.content);
                    }
                    for call in &m.tool_calls {
                        names.insert(&call.id, &call.name);
                        let args = match &call.arguments {
                            Value::Null => json!({}),
                            args => args.clone(),
                        };
                        push_part(
                            &mut contents,
                            "model",
                            json!({"functionCall": {"id": call.id, "name": call.name, "args": args}}),
                        );
                    }
                }
                ChatRole::Tool => {
                    let id = m.tool_call_id.as_deref();
                    let name = m
                        .tool_name
                        .as_deref()
                        .or_else(|| id.and_then(|id| names.get(id).copied()));
                    let Some(name) = name else {
                        tracing::debug!(
                            "gemini: a tool result names no tool, sending it as user text"
                        );
                        if !m.content.is_empty() {
                            push_turn(&mut contents, "user", &m.content);
                        }
                        continue;
                    };
                    // The documented keys: `output`, or `error` for a failed call.
                    let key = if m.is_error { "error" } else { "output" };
                    let mut response = json!({"name": name, "response": {key: m.content}});
                    if let Some(id) = id {
                        response["id"] = json!(id);
                    }
                    push_part(&mut contents, "user", json!({"functionResponse": response}));
                }
                ChatRole::System | ChatRole::User => {}
            }
        }
        if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
            push_turn(&mut contents, "model", partial);
            push_turn(&mut contents, "user", CONTINUE_INSTRUCTION);
        }

        let mut config = serde_json::Map::new();
        if let Some(t) = request.temperature {
            config.insert("temperature".into(), json!(t));
        }
        if let Some(p) = request.top_p {
            config.insert("topP".into(), json!(p));
        }
        if let Some(max) = request.max_output_tokens {
            config.insert("maxOutputTokens".into(), json!(max));
        }
        if !request.stop.is_empty() {
            if request.stop.len() > MAX_STOP_SEQUENCES {
                tracing::debug!(
                    count = request.stop.len(),
                    "gemini: keeping the first {MAX_STOP_SEQUENCES} stop sequences"
                );
            }
            let stop: Vec<&String> = request.stop.iter().take(MAX_STOP_SEQUENCES).collect();
            config.insert("stopSequences".into(), json!(stop));
        }
        if let Some(effort) = &request.reasoning_effort {
            let mut thinking = json!({"includeThoughts": true});
            match thinking_budget(effort) {
                Some(budget) => thinking["thinkingBudget"] = json!(budget),
                None => tracing::debug!(
                    effort,
                    "gemini: unknown reasoning effort, letting the model choose its budget"
                ),
            }
            config.insert("thinkingConfig".into(), thinking);
        }

        let mut body = serde_json::Map::new();
        body.insert("contents".into(), Value::Array(contents));
        add_tools(&mut body, request);
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        if !config.is_empty() {
            body.insert("generationConfig".into(), Value::Object(config));
        }
        // Configured extras (e.g. `safetySettings`, or `generationConfig.topK`) merge
        // over the normalized fields.
        wire::merge_json(&mut body, &self.http.params);
        Value::Object(body)
    }
}

/// Appends a text turn, merging it into the previous one when the role repeats (the
/// API wants user and model turns to alternate).
fn push_turn(contents: &mut Vec<Value>, role: &str, text: &str) {
    push_part(contents, role, json!({"text": text}));
}

/// Appends a part to the last turn when it has the same role, else to a new turn.
fn push_part(contents: &mut Vec<Value>, role: &str, part: Value) {
    if let Some(last) = contents.last_mut()
        && last["role"] == role
        && let Some(parts) = last["parts"].as_array_mut()
    {
        parts.push(part);
        return;
    }
    contents.push(json!({"role": role, "parts": [part]}));
}

/// `tools` (function declarations) and `toolConfig`.
fn add_tools(body: &mut serde_json::Map<String, Value>, request: &ChatRequest) {
    if request.tools.is_empty() {
        if request.tool_choice.is_some() {
            tracing::debug!("gemini: dropping tool_choice, no tools are offered");
        }
        return;
    }
    let declarations: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            let mut declaration = json!({"name": t.name, "description": t.description});
            let parameters = gemini_schema(&t.name, &t.parameters);
            // An object without properties is rejected ("should be non-empty for
            // OBJECT type"): a tool without parameters declares none.
            let empty = parameters
                .get("properties")
                .is_none_or(|p| p.as_object().is_some_and(serde_json::Map::is_empty))
                && parameters.get("type").is_none_or(|t| t == "object");
            if !empty {
                declaration["parameters"] = parameters;
            }
            declaration
        })
        .collect();
    body.insert(
        "tools".into(),
        json!([{"functionDeclarations": declarations}]),
    );
    let config = match &request.tool_choice {
        None => return,
        Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
        Some(ToolChoice::None) => json!({"mode": "NONE"}),
        Some(ToolChoice::Required) => json!({"mode": "ANY"}),
        Some(ToolChoice::Tool(name)) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    body.insert(
        "toolConfig".into(),
        json!({"functionCallingConfig": config}),
    );
}

/// The keywords of the API's `Schema` (a subset of OpenAPI 3.0); anything else is
/// rejected as an unknown field.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// How deep `$ref`s are inlined (a recursive schema stops there).
const MAX_REF_DEPTH: usize = 8;

/// A JSON Schema as the API's OpenAPI subset: `$ref`s into `$defs`/`definitions` are
/// inlined, `const` becomes a one-value `enum`, a `type` list with `null` becomes
/// `nullable`, and every other unsupported keyword is dropped (with a debug log).
fn gemini_schema(tool: &str, schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut dropped = std::collections::BTreeSet::new();
    let out = convert_schema(schema, &defs, 0, &mut dropped);
    if !dropped.is_empty() {
        tracing::debug!(
            tool,
            dropped = ?dropped,
            "gemini: dropping JSON Schema keywords the API does not accept"
        );
    }
    out
}

fn convert_schema(
    schema: &Value,
    defs: &Value,
    depth: usize,
    dropped: &mut std::collections::BTreeSet<String>,
) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/$defs/")
            .or_else(|| reference.strip_prefix("#/definitions/"))
            .and_then(|name| defs.get(name));
        return match target {
            Some(target) if depth < MAX_REF_DEPTH => {
                let mut resolved = convert_schema(target, defs, depth + 1, dropped);
                // Sibling keywords of the `$ref` (e.g. a description) win.
                if let (Value::Object(resolved), Value::Object(siblings)) = (
                    &mut resolved,
                    convert_schema(
                        &Value::Object(
                            map.iter()
                                .filter(|(k, _)| *k != "$ref")
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        ),
                        defs,
                        depth + 1,
                        dropped,
                    ),
                ) {
                    resolved.extend(siblings);
                }
                resolved
            }
            _ => {
                dropped.insert(format!("$ref {reference}"));
                json!({"type": "object"})
            }
        };
    }
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, prop)| {
                                (name.clone(), convert_schema(prop, defs, depth, dropped))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(properties));
            }
            "items" => {
                out.insert(key.clone(), convert_schema(value, defs, depth, dropped));
            }
            "anyOf" => {
                let variants = value
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .map(|s| convert_schema(s, defs, depth, dropped))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(variants));
            }
            "type" => match value {
                Value::Array(types) => {
                    let mut rest = types.iter().filter(|t| *t != "null");
                    if types.iter().any(|t| t == "null") {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(first) = rest.next() {
                        out.insert("type".into(), first.clone());
                    }
                    if rest.next().is_some() {
                        dropped.insert("type (all but the first of a type list)".into());
                    }
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            k if SCHEMA_KEYS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            other => {
                dropped.insert(other.to_string());
            }
        }
    }
    Value::Object(out)
}

/// The thinking budget, in tokens, of a reasoning effort.
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// A Gemini `finishReason`, normalized.
fn finish_reason(reason: &str) -> String {
    match reason {
        "STOP" => "stop".into(),
        "MAX_TOKENS" => "length".into(),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter".into()
        }
        other => other.to_ascii_lowercase(),
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let mut req = self
            .http
            .client
            .post(self.url(&request.model))
            .json(&self.body(&request));
        if let Some(key) = &self.http.api_key {
            req = req.header("x-goog-api-key", key.expose());
        }
        let req = wire::with_headers(req, &self.http.headers);
        let response = wire::send(req, self.http.idle_timeout).await?;
        let status = response.status();
        if !status.is_success() {
            let header_wait = wire::retry_after_header(response.headers());
            let body = response.text().await.unwrap_or_default();
            return Err(http_error(status.as_u16(), &body, header_wait));
        }
        let state = StreamState {
            events: Box::pin(response.bytes_stream().eventsource()),
            pending: VecDeque::new(),
            turn: Turn::default(),
            done: false,
            idle_timeout: self.http.idle_timeout,
        };
        Ok(futures::stream::unfold(state, next_event).boxed())
    }
}

type SseStream = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

struct StreamState {
    events: SseStream,
    pending: VecDeque<ProviderEvent>,
    turn: Turn,
    done: bool,
    idle_timeout: Duration,
}

/// What the chunks so far said about the end of the reply. Every chunk may carry
/// `usageMetadata` (the running total), so the last one is reported, once, at the end.
#[derive(Default)]
struct Turn {
    usage: Option<Usage>,
    finish: Option<String>,
    /// Function calls so far (ids are generated from it when the API sends none).
    calls: usize,
}

impl Turn {
    /// The events that close a reply whose stream ended: usage, then the finish
    /// reason; an error if the provider never said it had finished.
    fn close(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        let Some(reason) = self.finish.take() else {
            return Err(ProviderError::new(
                ProviderErrorKind::Connect,
                "the stream ended before a finishReason",
            ));
        };
        if let Some(usage) = self.usage.take() {
            out.push_back(ProviderEvent::Usage(usage));
        }
        // The API finishes a reply of function calls with STOP.
        let reason = if self.calls > 0 && reason == "stop" {
            "tool_calls".to_string()
        } else {
            reason
        };
        out.push_back(ProviderEvent::Finished(reason));
        Ok(())
    }
}

async fn next_event(
    mut state: StreamState,
) -> Option<(Result<ProviderEvent, ProviderError>, StreamState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if state.done {
            return None;
        }
        let next = tokio::time::timeout(state.idle_timeout, state.events.next()).await;
        let result = match next {
            // A server that keeps the connection open after its last chunk has still
            // finished the reply.
            Err(_) if state.turn.finish.is_some() => {
                state.done = true;
                state.turn.close(&mut state.pending)
            }
            Err(_) => Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                "the stream went idle",
            )),
            Ok(None) => {
                state.done = true;
                state.turn.close(&mut state.pending)
            }
            Ok(Some(Err(e))) => Err(ProviderError::new(
                ProviderErrorKind::Connect,
                format!("stream broke: {e}"),
            )),
            Ok(Some(Ok(event))) if event.data.trim().is_empty() => Ok(()),
            Ok(Some(Ok(event))) => parse_chunk(&event.data, &mut state.turn, &mut state.pending),
        };
        if let Err(err) = result {
            // Nothing of a failed chunk is pending: events are only queued once the
            // chunk parsed, and the queue is empty when the next chunk is read.
            state.done = true;
            return Some((Err(err), state));
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    function_call: Option<FunctionCall>,
}

/// A complete function call (the API never splits one across chunks).
#[derive(Deserialize)]
struct FunctionCall {
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Value,
}

impl FunctionCall {
    /// The normalized call; `args` must be an object (a JSON string of one is
    /// accepted, nothing is `{}`).
    fn into_tool_call(self, n: usize) -> Result<ToolCall, ProviderError> {
        let arguments = match self.args {
            Value::Null => json!({}),
            Value::String(s) if s.trim().is_empty() => json!({}),
            Value::String(s) => serde_json::from_str::<Value>(&s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| malformed_args(&self.name, &s))?,
            args @ Value::Object(_) => args,
            other => return Err(malformed_args(&self.name, &other.to_string())),
        };
        Ok(ToolCall {
            id: self
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{n}")),
            name: self.name,
            arguments,
        })
    }
}

fn malformed_args(name: &str, args: &str) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Protocol,
        format!(
            "malformed arguments of tool call {name:?}: {}",
            truncate(args, 200)
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    /// Includes the cached tokens (`cachedContentTokenCount`).
    #[serde(default)]
    prompt_token_count: u64,
    /// The visible reply, without thoughts.
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

/// Turns one `GenerateContentResponse` into events (text, thoughts and function calls
/// at once; usage and the finish reason are kept in `turn` for the end of the stream).
/// A chunk that fails queues nothing.
fn parse_chunk(
    data: &str,
    turn: &mut Turn,
    out: &mut VecDeque<ProviderEvent>,
) -> Result<(), ProviderError> {
    let before = out.len();
    let result = parse_chunk_events(data, turn, out);
    if result.is_err() {
        out.truncate(before);
    }
    result
}

fn parse_chunk_events(
    data: &str,
    turn: &mut Turn,
    out: &mut VecDeque<ProviderEvent>,
) -> Result<(), ProviderError> {
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!("malformed chunk ({e}): {}", truncate(data, 200)),
        )
    })?;
    if let Some(error) = chunk.error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider reported an error mid-stream");
        return Err(ProviderError::new(ProviderErrorKind::Upstream, message));
    }
    if let Some(reason) = chunk.prompt_feedback.and_then(|f| f.block_reason) {
        tracing::info!(block_reason = %reason, "gemini: the prompt was blocked");
        turn.finish = Some("content_filter".into());
    }
    if let Some(candidate) = chunk.candidates.into_iter().next() {
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = part.function_call {
                out.push_back(ProviderEvent::ToolCall(call.into_tool_call(turn.calls)?));
                turn.calls += 1;
                continue;
            }
            let Some(text) = part.text.filter(|t| !t.is_empty()) else {
                continue;
            };
            out.push_back(if part.thought {
                ProviderEvent::Reasoning(text)
            } else {
                ProviderEvent::Text(text)
            });
        }
        if let Some(reason) = candidate.finish_reason {
            if finish_reason(&reason) == "content_filter" {
                tracing::info!(finish_reason = %reason, "gemini: the reply was blocked");
            }
            turn.finish = Some(finish_reason(&reason));
        }
    }
    if let Some(u) = chunk.usage_metadata {
        turn.usage = Some(Usage {
            prompt_tokens: u.prompt_token_count,
            // Thinking tokens are billed as output.
            completion_tokens: u.candidates_token_count + u.thoughts_token_count,
            cached_prompt_tokens: u.cached_content_token_count,
            reasoning_tokens: u.thoughts_token_count,
            estimated: false,
        });
    }
    Ok(())
}

/// An HTTP error response (`{"error": {"code", "message", "status"}}`, sometimes
/// wrapped in an array) as a [`ProviderError`].
fn http_error(status: u16, body: &str, header_wait: Option<Duration>) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| match v {
        Value::Array(items) => items.first().and_then(|i| i.get("error")),
        other => other.get("error"),
    });
    let api_status = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let detail = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| truncate(body, 300).to_string());
    // A wrong key is a 400 INVALID_ARGUMENT whose ErrorInfo says API_KEY_INVALID: a
    // credentials problem, not a malformed request.
    let key_invalid = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .is_some_and(|ds| {
            ds.iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let kind = if api_status == "RESOURCE_EXHAUSTED" {
        ProviderErrorKind::RateLimited
    } else if key_invalid {
        ProviderErrorKind::Auth
    } else {
        wire::status_kind(status)
    };
    let message = if api_status.is_empty() {
        format!("HTTP {status}: {detail}")
    } else {
        format!("HTTP {status} {api_status}: {detail}")
    };
    let mut err = ProviderError::new(kind, message);
    err.retry_after = header_wait.or_else(|| error.and_then(retry_delay));
    err
}

/// The `retryDelay` of a `google.rpc.RetryInfo` detail (`"7s"`, `"1.5s"`).
fn retry_delay(error: &Value) -> Option<Duration> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests;
