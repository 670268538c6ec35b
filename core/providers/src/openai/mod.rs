//! OpenAI Chat Completions, streamed (or, for a whole reply, not): the wire format of
//! OpenAI, of Azure OpenAI and of every OpenAI-compatible server (vLLM, LM Studio,
//! OpenRouter, Groq, LiteLLM...).
//!
//! Request: `POST {base_url}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`. Response: server-sent events whose data is a
//! `chat.completion.chunk`, ending with `data: [DONE]`; the usage arrives in a last
//! chunk with empty `choices`.
//!
//! A request for a whole reply ([`ChatRequest::whole_reply`]) goes with `stream:
//! false`; its `chat.completion` answer (`choices[0].message` with `content`,
//! `reasoning_content` and whole `tool_calls`, `finish_reason`, `usage`) becomes the
//! same events as its stream would have.
//!
//! Tool calls stream as `choices[0].delta.tool_calls[]` fragments keyed by `index`: the
//! first fragment of an index carries the call's `id` and `function.name`, later ones
//! append to `function.arguments` (a JSON text split anywhere); parallel calls
//! interleave. They are assembled per index and emitted, in index order, when the
//! choice finishes (or the stream ends), before the `Finished` event.
//!
//! Azure OpenAI ([`Dialect::Azure`]) is the same protocol per deployment:
//! `POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=V`
//! with an `api-key` header. It adds chunks with empty `choices` carrying
//! `prompt_filter_results` (ignored), answers a prompt its content filter rejects with
//! HTTP 400 `error.code = "content_filter"`, and ends a completion its filter cut with
//! `finish_reason: "content_filter"`.

use super::wire::{self, HttpSettings};
use super::{
    ChatMessage, ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, ToolCall, ToolChoice, Usage,
};
use crate::config::{DEFAULT_AZURE_API_VERSION, ProviderConfig, ProviderKind};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The instruction that turns a partial assistant reply into a continuation on APIs
/// without assistant prefill.
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

/// Which flavour of the Chat Completions API a provider speaks: where requests go and
/// how the key is sent. The body and the stream are the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{base_url}/chat/completions`, `Authorization: Bearer KEY`.
    OpenAi,
    /// `{base_url}/openai/deployments/{model}/chat/completions?api-version=V`,
    /// `api-key: KEY`; the model names are deployment names.
    Azure { api_version: String },
}

pub struct OpenAiProvider {
    http: HttpSettings,
    dialect: Dialect,
}

impl OpenAiProvider {
    /// An OpenAI provider, or an Azure OpenAI one when `cfg.kind` is `azure`.
    pub fn new(cfg: &ProviderConfig) -> Self {
        let dialect = match cfg.kind {
            ProviderKind::Azure => Dialect::Azure {
                api_version: cfg
                    .api_version
                    .clone()
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_string()),
            },
            _ => Dialect::OpenAi,
        };
        let mut http = HttpSettings::from_config(cfg, "https://api.openai.com/v1");
        if matches!(dialect, Dialect::Azure { .. }) {
            // Accept the endpoint with or without the `/openai` path the portal shows.
            if let Some(stripped) = http.base_url.strip_suffix("/openai") {
                http.base_url = stripped.to_string();
            }
        }
        Self { http, dialect }
    }

    /// Where a request for `model` goes.
    fn url(&self, model: &str) -> Result<url::Url, ProviderError> {
        let bad = |e: String| {
            ProviderError::new(
                ProviderErrorKind::BadRequest,
                format!("invalid base_url {:?}: {e}", self.http.base_url),
            )
        };
        match &self.dialect {
            Dialect::OpenAi => url::Url::parse(&format!("{}/chat/completions", self.http.base_url))
                .map_err(|e| bad(e.to_string())),
            Dialect::Azure { api_version } => {
                let mut url =
                    url::Url::parse(&self.http.base_url).map_err(|e| bad(e.to_string()))?;
                url.path_segments_mut()
                    .map_err(|()| bad("not a base URL".into()))?
                    .pop_if_empty()
                    .extend(["openai", "deployments", model, "chat", "completions"]);
                url.query_pairs_mut()
                    .append_pair("api-version", api_version);
                Ok(url)
            }
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
            messages.push(json!({"role": "assistant", "content": partial}));
            messages.push(json!({"role": "user", "content": CONTINUE_INSTRUCTION}));
        }
        let mut body = if request.whole_reply {
            json!({"messages": messages, "stream": false})
        } else {
            json!({
                "messages": messages,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        };
        // Azure routes by deployment (in the URL); the body's model is not needed.
        if self.dialect == Dialect::OpenAi {
            body["model"] = json!(request.model);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = request.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(effort) = &request.reasoning_effort {
            body["reasoning_effort"] = json!(effort);
        }
        if let Some(max) = request.max_output_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        if let Some(format) = &request.response_format {
            body["response_format"] = format.clone();
        }
        if !request.stop.is_empty() {
            // The API takes at most four stop sequences.
            if request.stop.len() > 4 {
                tracing::debug!(
                    count = request.stop.len(),
                    "openai: keeping the first 4 stop sequences"
                );
            }
            body["stop"] = json!(request.stop.iter().take(4).collect::<Vec<_>>());
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }})
                })
                .collect();
            if let Some(choice) = &request.tool_choice {
                body["tool_choice"] = match choice {
                    ToolChoice::Auto => json!("auto"),
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Tool(name) => {
                        json!({"type": "function", "function": {"name": name}})
                    }
                };
            }
        }
        // Configured extras pass through as they are, over the normalized fields.
        for (k, v) in &self.http.params {
            body[k] = v.clone();
        }
        body
    }
}

fn message_json(m: &ChatMessage) -> Value {
    match m.role {
        ChatRole::System => json!({"role": "system", "content": m.content}),
        ChatRole::User => json!({"role": "user", "content": m.content}),
        ChatRole::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        ChatRole::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()},
                    })
                })
                .collect();
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        ChatRole::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }),
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn answers_whole(&self) -> bool {
        true
    }

    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let url = self.url(&request.model)?;
        let mut req = self.http.client.post(url).json(&self.body(&request));
        if let Some(key) = &self.http.api_key {
            req = match self.dialect {
                Dialect::OpenAi => req.bearer_auth(key.expose()),
                Dialect::Azure { .. } => req.header("api-key", key.expose()),
            };
        }
        for (name, value) in &self.http.headers {
            req = req.header(name, value.expose());
        }
        let wait = self.http.response_wait(request.whole_reply);
        let response = wire::send(req, wait).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.text().await.unwrap_or_default();
            let mut err = match content_filter_message(&body) {
                Some(message) => ProviderError::new(ProviderErrorKind::BadRequest, message),
                None => ProviderError::new(
                    status_kind(status.as_u16()),
                    error_message(status.as_u16(), &body),
                ),
            };
            err.retry_after = retry_after;
            return Err(err);
        }
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        // A server that streams although asked not to is read as a stream.
        if request.whole_reply && !streamed {
            let events = whole_completion(&wire::whole_body(response, wait).await?)?;
            return Ok(Box::pin(futures::stream::iter(
                events.into_iter().map(Ok::<_, ProviderError>),
            )));
        }
        Ok(wire::sse_stream(
            response,
            self.http.idle_timeout,
            ChunkParser::default(),
        ))
    }
}

/// The events of a non-streamed `chat.completion`, in the order a stream of it
/// would have given them.
fn whole_completion(body: &str) -> Result<VecDeque<ProviderEvent>, ProviderError> {
    let completion: Completion = serde_json::from_str(body).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!("malformed chat.completion ({e}): {}", truncate(body, 200)),
        )
    })?;
    let chunk = Chunk {
        choices: completion
            .choices
            .into_iter()
            .map(|choice| Choice {
                delta: choice.message.map(|mut message| {
                    // A message's calls are whole and carry no `index`: each is its own.
                    for (i, call) in message.tool_calls.iter_mut().flatten().enumerate() {
                        call.index = Some(i as u64);
                    }
                    message
                }),
                finish_reason: choice.finish_reason,
            })
            .collect(),
        usage: completion.usage,
        error: completion.error,
    };
    let mut parser = ChunkParser::default();
    let mut out = VecDeque::new();
    parser.apply(chunk, &mut out)?;
    parser.end(&mut out)?;
    Ok(out)
}

impl wire::SseParser for ChunkParser {
    const END: &'static str = "[DONE]";

    fn parse(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<bool, ProviderError> {
        if data == "[DONE]" {
            self.end(out)?;
            return Ok(true);
        }
        self.chunk(data, out)?;
        Ok(false)
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChunkUsage>,
    error: Option<Value>,
}

/// A non-streamed reply: `chat.completion`.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<WholeChoice>,
    usage: Option<ChunkUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WholeChoice {
    /// The same fields as a chunk's `delta`, whole.
    message: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    /// Absent (or null) in Azure's content-filter annotation chunks.
    #[serde(default)]
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    /// Sent by reasoning models on several compatible servers (DeepSeek, vLLM).
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
    /// The legacy single `function_call` (no id, no index).
    function_call: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    /// Some compatible servers omit it; then a new `id` starts a new call.
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptTokensDetails>,
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionTokensDetails {
    reasoning_tokens: Option<u64>,
}

/// A tool call whose fragments are still arriving.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns `chat.completion.chunk`s into events, assembling streamed tool calls.
#[derive(Default)]
struct ChunkParser {
    /// Tool calls being assembled, by their `index`.
    calls: BTreeMap<u64, PartialCall>,
    /// Whether tool calls were emitted (a compatible server's `stop` then means
    /// `tool_calls`).
    emitted_calls: bool,
    finished: bool,
}

impl ChunkParser {
    /// One chunk's events.
    fn chunk(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed chunk ({e}): {}", truncate(data, 200)),
            )
        })?;
        self.apply(chunk, out)
    }

    /// The events of one parsed chunk (or of a whole completion as one chunk).
    fn apply(
        &mut self,
        chunk: Chunk,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error mid-stream");
            return Err(ProviderError::new(ProviderErrorKind::Upstream, message));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
                    out.push_back(ProviderEvent::Reasoning(r));
                }
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(ProviderEvent::Text(text));
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.add_fragment(call.index, call.id, call.function);
                }
                if let Some(function) = delta.function_call {
                    self.add_fragment(Some(0), None, Some(function));
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.flush_calls(out)?;
                let reason = match reason.as_str() {
                    "tool_calls" | "function_call" => "tool_calls".to_string(),
                    "stop" if self.emitted_calls => "tool_calls".to_string(),
                    _ => reason,
                };
                self.finished = true;
                out.push_back(ProviderEvent::Finished(reason));
            }
        }
        if let Some(u) = chunk.usage {
            out.push_back(ProviderEvent::Usage(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_prompt_tokens: u
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
                reasoning_tokens: u
                    .completion_tokens_details
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
                estimated: false,
            }));
        }
        Ok(())
    }

    /// The stream's end (`[DONE]`): calls still assembling go out, and a reply that
    /// made calls without a finish reason finishes with `tool_calls`.
    fn end(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        let had_calls = !self.calls.is_empty();
        self.flush_calls(out)?;
        if had_calls && !self.finished {
            self.finished = true;
            out.push_back(ProviderEvent::Finished("tool_calls".into()));
        }
        Ok(())
    }

    fn add_fragment(
        &mut self,
        index: Option<u64>,
        id: Option<String>,
        function: Option<FunctionDelta>,
    ) {
        let id = id.filter(|i| !i.is_empty());
        let index = index.unwrap_or_else(|| {
            // No index: a new id (or the first fragment) starts a new call, anything
            // else continues the last one.
            let last = self.calls.iter().next_back();
            match (last, &id) {
                (None, _) => 0,
                (Some((&i, call)), Some(id)) if !call.id.is_empty() && call.id != *id => i + 1,
                (Some((&i, _)), _) => i,
            }
        });
        let call = self.calls.entry(index).or_default();
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(f) = function {
            if let Some(name) = f.name.filter(|n| !n.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args);
            }
        }
    }

    /// Emits the assembled calls in index order: all of them, or none and an error.
    fn flush_calls(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        let mut calls = Vec::with_capacity(self.calls.len());
        for (index, call) in std::mem::take(&mut self.calls) {
            let name = if call.name.is_empty() {
                return Err(ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!("tool call #{index} came without a function name"),
                ));
            } else {
                call.name
            };
            let arguments = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(&call.arguments) {
                    Ok(Value::Null) => json!({}),
                    Ok(v) => v,
                    Err(e) => {
                        return Err(ProviderError::new(
                            ProviderErrorKind::Protocol,
                            format!(
                                "the arguments of the call to tool `{name}` are not valid JSON ({e}): {}",
                                truncate(&call.arguments, 200)
                            ),
                        ));
                    }
                }
            };
            let id = if call.id.is_empty() {
                format!("call_{}", uuid::Uuid::new_v4().simple())
            } else {
                call.id
            };
            calls.push(ProviderEvent::ToolCall(ToolCall {
                id,
                name,
                arguments,
            }));
        }
        self.emitted_calls |= !calls.is_empty();
        out.extend(calls);
        Ok(())
    }
}

fn status_kind(status: u16) -> ProviderErrorKind {
    match status {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        408 => ProviderErrorKind::Timeout,
        500..=599 => ProviderErrorKind::Server,
        _ => ProviderErrorKind::BadRequest,
    }
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
        .unwrap_or_else(|| truncate(body, 300).to_string());
    format!("HTTP {status}: {detail}")
}

/// Azure's refusal of a prompt by its content filter (HTTP 400 with
/// `error.code = "content_filter"`), as a message naming the filtered categories.
fn content_filter_message(body: &str) -> Option<String> {
    let v = serde_json::from_str::<Value>(body).ok()?;
    let error = v.get("error")?;
    let code = error.get("code").and_then(Value::as_str);
    let inner_code = error.pointer("/innererror/code").and_then(Value::as_str);
    if code != Some("content_filter") && inner_code != Some("ResponsibleAIPolicyViolation") {
        return None;
    }
    let detail = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the prompt triggered the content management policy");
    let mut message = format!("the request was blocked by Azure's content filter: {detail}");
    if let Some(results) = error
        .pointer("/innererror/content_filter_result")
        .and_then(Value::as_object)
    {
        let filtered: Vec<String> = results
            .iter()
            .filter(|(_, r)| r.get("filtered") == Some(&Value::Bool(true)))
            .map(
                |(category, r)| match r.get("severity").and_then(Value::as_str) {
                    Some(severity) => format!("{category} ({severity})"),
                    None => category.clone(),
                },
            )
            .collect();
        if !filtered.is_empty() {
            message.push_str(&format!(" [filtered: {}]", filtered.join(", ")));
        }
    }
    Some(message)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
