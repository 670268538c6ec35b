//! Ollama's native chat API, streamed.
//!
//! Request: `POST {base_url}/api/chat` with `stream: true`; sampling parameters go in
//! `options` (`temperature`, `top_p`, `num_predict`, `stop`), and `think` turns on the
//! separate reasoning trace of thinking models.
//!
//! Response: newline-delimited JSON (`application/x-ndjson`), one object per line:
//! `message.content` is text, `message.thinking` reasoning; the last object has
//! `done: true`, `done_reason` and the token counts `prompt_eval_count` and
//! `eval_count`. An error after the stream started is a line `{"error": "..."}`.
//!
//! Tools: `tools: [{type: "function", function: {name, description, parameters}}]`;
//! there is no `tool_choice`. Calls go back as the assistant's `tool_calls` (arguments
//! as an object), results as `{"role": "tool", "tool_name"}` messages. Streamed
//! `message.tool_calls` arrive whole; calls get `call_<n>` ids when the server sends
//! none, and `done_reason: stop` after calls becomes `tool_calls`.
//!
//! Continuation is native: a final assistant message is continued, not answered.
//! Models can be discovered with `GET {base_url}/api/tags`.

use super::wire::{self, HttpSettings, LineSplitter, truncate};
use super::{
    ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, ToolCall, Usage,
};
use crate::config::ProviderConfig;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

/// Configured `params` that are fields of the request itself; every other one is a
/// model option and goes into `options`.
const TOP_LEVEL_PARAMS: &[&str] = &["format", "keep_alive", "think"];

pub struct OllamaProvider {
    http: HttpSettings,
}

impl OllamaProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            // Ollama itself needs no key; a proxy in front of it (or Ollama's cloud) may.
            http: HttpSettings::from_config(cfg, DEFAULT_BASE_URL),
        }
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = match &self.http.api_key {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        };
        wire::with_headers(req, &self.http.headers)
    }

    fn body(&self, request: &ChatRequest) -> Value {
        // Call ids to tool names, for results that do not name their tool.
        let mut names: std::collections::HashMap<&str, &str> = Default::default();
        let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let role = match m.role {
                ChatRole::System => "system",
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
                ChatRole::Tool => "tool",
            };
            let mut message = json!({"role": role, "content": m.content});
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|call| {
                        names.insert(&call.id, &call.name);
                        let arguments = match &call.arguments {
                            Value::Null => json!({}),
                            args => args.clone(),
                        };
                        json!({"function": {"name": call.name, "arguments": arguments}})
                    })
                    .collect();
                message["tool_calls"] = Value::Array(calls);
            }
            if m.role == ChatRole::Tool {
                let name = m.tool_name.as_deref().or_else(|| {
                    m.tool_call_id
                        .as_deref()
                        .and_then(|id| names.get(id).copied())
                });
                match name {
                    Some(name) => message["tool_name"] = json!(name),
                    None => tracing::debug!("ollama: a tool result names no tool"),
                }
            }
            messages.push(message);
        }
        if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
            // A final assistant message is continued from its last character.
            messages.push(json!({"role": "assistant", "content": partial}));
        }

        let mut options = serde_json::Map::new();
        if let Some(t) = request.temperature {
            options.insert("temperature".into(), json!(t));
        }
        if let Some(p) = request.top_p {
            options.insert("top_p".into(), json!(p));
        }
        if let Some(max) = request.max_output_tokens {
            options.insert("num_predict".into(), json!(max));
        }
        if !request.stop.is_empty() {
            options.insert("stop".into(), json!(request.stop));
        }

        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(true));
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
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
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = &request.tool_choice {
            tracing::debug!(?choice, "ollama: the API has no tool_choice, dropping it");
        }
        if request.reasoning_effort.is_some() {
            body.insert("think".into(), json!(true));
        }
        for (k, v) in &self.http.params {
            if TOP_LEVEL_PARAMS.contains(&k.as_str()) {
                body.insert(k.clone(), v.clone());
            } else {
                options.insert(k.clone(), v.clone());
            }
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        Value::Object(body)
    }
}

#[async_trait::async_trait]
impl Provider for OllamaProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/api/chat", self.http.base_url);
        let req = self.request(self.http.client.post(&url).json(&self.body(&request)));
        let response = wire::send(req, self.http.idle_timeout).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = wire::retry_after_header(response.headers());
            let body = response.text().await.unwrap_or_default();
            let mut err = http_error(status.as_u16(), &body);
            err.retry_after = retry_after;
            return Err(err);
        }
        let state = StreamState {
            bytes: Box::pin(response.bytes_stream()),
            lines: LineSplitter::default(),
            calls: Calls::default(),
            pending: VecDeque::new(),
            done: false,
            failed: None,
            idle_timeout: self.http.idle_timeout,
        };
        Ok(futures::stream::unfold(state, next_event).boxed())
    }

    /// The locally available models, from `GET /api/tags`.
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let url = format!("{}/api/tags", self.http.base_url);
        let response = wire::send(
            self.request(self.http.client.get(&url)),
            self.http.idle_timeout,
        )
        .await?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| wire::transport_error(&e))?;
        if !status.is_success() {
            return Err(http_error(status.as_u16(), &body));
        }
        let tags: Tags = serde_json::from_str(&body).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed /api/tags answer ({e}): {}", truncate(&body, 200)),
            )
        })?;
        Ok(tags.models.into_iter().map(|m| m.name).collect())
    }
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

struct StreamState {
    bytes: ByteStream,
    lines: LineSplitter,
    calls: Calls,
    pending: VecDeque<ProviderEvent>,
    /// Set after `done: true` or an error: nothing more is read.
    done: bool,
    /// An error to report once the pending events are out.
    failed: Option<ProviderError>,
    idle_timeout: Duration,
}

async fn next_event(
    mut state: StreamState,
) -> Option<(Result<ProviderEvent, ProviderError>, StreamState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if let Some(err) = state.failed.take() {
            return Some((Err(err), state));
        }
        if state.done {
            return None;
        }
        let next = tokio::time::timeout(state.idle_timeout, state.bytes.next()).await;
        let mut ended = false;
        let lines = match next {
            Err(_) => Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                "the stream went idle",
            )),
            Ok(Some(Err(e))) => Err(ProviderError::new(
                ProviderErrorKind::Connect,
                format!("stream broke: {e}"),
            )),
            Ok(Some(Ok(chunk))) => Ok(state.lines.push(&chunk)),
            Ok(None) => {
                ended = true;
                Ok(state.lines.finish().into_iter().collect())
            }
        };
        let result = lines.and_then(|lines| {
            for line in lines {
                if state.done {
                    break; // nothing after the final object counts
                }
                state.done = parse_line(&line, &mut state.calls, &mut state.pending)?;
            }
            if ended && !state.done {
                return Err(ProviderError::new(
                    ProviderErrorKind::Connect,
                    "the stream ended before the final `done: true` object",
                ));
            }
            Ok(())
        });
        if let Err(err) = result {
            // The events of the lines before the failure still count.
            state.done = true;
            state.failed = Some(err);
        }
    }
}

#[derive(Deserialize)]
struct ChatChunk {
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkMessage {
    #[serde(default)]
    content: String,
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

/// A complete tool call (Ollama never splits one across lines).
#[derive(Deserialize)]
struct WireToolCall {
    /// Sent by newer servers only.
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl WireToolCall {
    /// The normalized call; `arguments` must be an object (a JSON string of one is
    /// accepted, nothing is `{}`).
    fn into_tool_call(self, n: usize) -> Result<ToolCall, ProviderError> {
        let WireFunction { name, arguments } = self.function;
        let malformed = |args: &str| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!(
                    "malformed arguments of tool call {name:?}: {}",
                    truncate(args, 200)
                ),
            )
        };
        let arguments = match arguments {
            Value::Null => json!({}),
            Value::String(s) if s.trim().is_empty() => json!({}),
            Value::String(s) => serde_json::from_str::<Value>(&s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| malformed(&s))?,
            args @ Value::Object(_) => args,
            other => return Err(malformed(&other.to_string())),
        };
        Ok(ToolCall {
            id: self
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{n}")),
            name,
            arguments,
        })
    }
}

/// What the lines so far said: how many tool calls (for generated ids and the finish
/// reason).
#[derive(Default)]
struct Calls {
    count: usize,
}

/// Turns one NDJSON line into events; true when it was the final object. A line that
/// fails queues nothing.
fn parse_line(
    line: &[u8],
    calls: &mut Calls,
    out: &mut VecDeque<ProviderEvent>,
) -> Result<bool, ProviderError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let chunk: ChatChunk = serde_json::from_slice(line).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!(
                "malformed line ({e}): {}",
                truncate(&String::from_utf8_lossy(line), 200)
            ),
        )
    })?;
    if let Some(error) = chunk.error {
        return Err(ProviderError::new(
            ProviderErrorKind::Upstream,
            error_text(&error).unwrap_or("the provider reported an error mid-stream"),
        ));
    }
    if let Some(message) = chunk.message {
        // Calls are checked first, so a malformed one queues nothing of its line.
        let mut parsed = Vec::with_capacity(message.tool_calls.len());
        for call in message.tool_calls {
            parsed.push(ProviderEvent::ToolCall(
                call.into_tool_call(calls.count + parsed.len())?,
            ));
        }
        calls.count += parsed.len();
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            out.push_back(ProviderEvent::Reasoning(thinking));
        }
        if !message.content.is_empty() {
            out.push_back(ProviderEvent::Text(message.content));
        }
        out.extend(parsed);
    }
    if !chunk.done {
        return Ok(false);
    }
    out.push_back(ProviderEvent::Usage(Usage {
        prompt_tokens: chunk.prompt_eval_count.unwrap_or(0),
        completion_tokens: chunk.eval_count.unwrap_or(0),
        estimated: false,
        ..Default::default()
    }));
    let reason = match chunk.done_reason.as_deref() {
        // Ollama says `stop` after tool calls too.
        None | Some("stop") if calls.count > 0 => "tool_calls".to_string(),
        None | Some("stop") => "stop".to_string(),
        Some("length") => "length".to_string(),
        Some(other) => other.to_string(),
    };
    out.push_back(ProviderEvent::Finished(reason));
    Ok(true)
}

/// Ollama's error is a string (`{"error": "..."}`); accept `{"message": ...}` too.
fn error_text(error: &Value) -> Option<&str> {
    error
        .as_str()
        .or_else(|| error.get("message").and_then(Value::as_str))
}

/// An HTTP error response (`{"error": "..."}`) as a [`ProviderError`]. A missing model
/// is a 404, a bad request that no retry or fallback fixes.
fn http_error(status: u16, body: &str) -> ProviderError {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(error_text).map(str::to_string))
        .unwrap_or_else(|| truncate(body, 300).to_string());
    ProviderError::new(
        wire::status_kind(status),
        format!("HTTP {status}: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatMessage;

    fn provider(params: Value) -> OllamaProvider {
        let mut cfg = crate::config::ProviderConfig::scripted_demo();
        cfg.params = params.as_object().cloned().unwrap_or_default();
        OllamaProvider::new(&cfg)
    }

    fn msg(role: ChatRole, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    fn parse_all(lines: &[&str]) -> Result<(Vec<ProviderEvent>, bool), ProviderError> {
        let mut out = VecDeque::new();
        let mut calls = Calls::default();
        let mut done = false;
        for l in lines {
            done = parse_line(l.as_bytes(), &mut calls, &mut out)?;
        }
        Ok((Vec::from(out), done))
    }

    #[test]
    fn body_keeps_roles_and_puts_sampling_in_options() {
        let body = provider(json!({"num_ctx": 8192, "keep_alive": "10m", "temperature": 0.1}))
            .body(&ChatRequest {
                model: "llama3.2".into(),
                messages: vec![
                    msg(ChatRole::System, "Be brief."),
                    msg(ChatRole::User, "hi"),
                ],
                temperature: Some(0.7),
                top_p: Some(0.5),
                max_output_tokens: Some(64),
                stop: vec!["\n\n".into()],
                ..Default::default()
            });
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
            ])
        );
        assert_eq!(
            body["options"],
            json!({"temperature": 0.1, "top_p": 0.5, "num_predict": 64, "stop": ["\n\n"], "num_ctx": 8192}),
            "configured params override and extend the options"
        );
        assert_eq!(body["keep_alive"], "10m", "request fields stay at the top");
        assert!(body.get("think").is_none());
    }

    #[test]
    fn reasoning_effort_turns_thinking_on() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "qwen3".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            reasoning_effort: Some("high".into()),
            ..Default::default()
        });
        assert_eq!(body["think"], true);
        assert!(body.get("options").is_none(), "{body}");
    }

    #[test]
    fn continuation_is_a_final_assistant_message() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "llama3.2".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            prefill: Some("Hello, wor".into()),
            ..Default::default()
        });
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello, wor"},
            ])
        );
    }

    #[test]
    fn lines_parse_into_text_thinking_usage_and_finish() {
        let (events, done) = parse_all(&[
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:56.836222Z","message":{"role":"assistant","content":"","thinking":"Hmm."},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:57.1Z","message":{"role":"assistant","content":"The"},"done":false}"#,
            "",
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:57.2Z","message":{"role":"assistant","content":" sky"},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:57.3Z","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#,
        ])
        .unwrap();
        assert!(done);
        assert_eq!(
            events,
            vec![
                ProviderEvent::Reasoning("Hmm.".into()),
                ProviderEvent::Text("The".into()),
                ProviderEvent::Text(" sky".into()),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 26,
                    completion_tokens: 282,
                    estimated: false,
                    ..Default::default()
                }),
                ProviderEvent::Finished("length".into()),
            ]
        );
        // Older servers send no done_reason.
        let (events, _) = parse_all(&[r#"{"model":"m","done":true,"eval_count":1}"#]).unwrap();
        assert_eq!(events.last(), Some(&ProviderEvent::Finished("stop".into())));
    }

    #[test]
    fn error_lines_and_malformed_lines_are_errors() {
        let err = parse_all(&[
            r#"{"model":"m","message":{"role":"assistant","content":"Yes"},"done":false}"#,
            r#"{"error":"an error was encountered while running the model"}"#,
        ])
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Upstream);
        assert_eq!(
            err.message,
            "an error was encountered while running the model"
        );
        assert_eq!(
            parse_all(&["{not json"]).unwrap_err().kind,
            ProviderErrorKind::Protocol
        );
        assert_eq!(
            parse_all(&[r#"{"done":"yes"}"#]).unwrap_err().kind,
            ProviderErrorKind::Protocol
        );
    }

    #[test]
    fn http_errors_are_classified() {
        let err = http_error(404, r#"{"error":"model 'nope' not found"}"#);
        assert_eq!(err.kind, ProviderErrorKind::BadRequest);
        assert_eq!(err.message, "HTTP 404: model 'nope' not found");
        assert!(!err.is_retryable());
        let err = http_error(500, r#"{"error":"llama runner process has terminated"}"#);
        assert_eq!(err.kind, ProviderErrorKind::Server);
        assert!(err.is_retryable());
        assert_eq!(
            http_error(502, "bad gateway").message,
            "HTTP 502: bad gateway"
        );
    }

    /// The whole stream path: NDJSON bytes cut at arbitrary places, as the network
    /// delivers them, come out as the same events.
    #[tokio::test]
    async fn a_byte_stream_split_mid_line_gives_the_same_events() {
        let ndjson = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"Hé"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":"llo ✓"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":3,"eval_count":2}"#,
            "\n",
        )
        .as_bytes();
        for cut in [1, 2, 3, 7, 50, ndjson.len()] {
            let chunks: Vec<Result<Bytes, reqwest::Error>> = ndjson
                .chunks(cut)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let state = StreamState {
                bytes: Box::pin(futures::stream::iter(chunks)),
                lines: LineSplitter::default(),
                calls: Calls::default(),
                pending: VecDeque::new(),
                done: false,
                failed: None,
                idle_timeout: Duration::from_secs(5),
            };
            let events: Vec<_> = futures::stream::unfold(state, next_event)
                .map(Result::unwrap)
                .collect()
                .await;
            assert_eq!(
                events,
                vec![
                    ProviderEvent::Text("Hé".into()),
                    ProviderEvent::Text("llo ✓".into()),
                    ProviderEvent::Usage(Usage {
                        prompt_tokens: 3,
                        completion_tokens: 2,
                        estimated: false,
                        ..Default::default()
                    }),
                    ProviderEvent::Finished("stop".into()),
                ],
                "chunks of {cut} bytes"
            );
        }
    }

    /// Chorus starts without Ollama running: discovery warns and goes on.
    #[tokio::test]
    async fn discovery_skips_an_unreachable_server() {
        let mut scripted = crate::config::ProviderConfig::scripted_demo();
        let mut ollama = scripted.clone();
        ollama.id = "ollama".into();
        ollama.kind = crate::config::ProviderKind::Ollama;
        ollama.models = Vec::new();
        // Nothing listens on port 1.
        ollama.base_url = Some("http://127.0.0.1:1".into());
        scripted.models = Vec::new();
        let mut registry = crate::ProviderRegistry::from_config(&[ollama, scripted], None);
        assert!(registry.models().iter().all(|m| m.provider != "ollama"));
        registry.discover_models().await;
        let ids: Vec<&str> = registry.models().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["scripted/demo"]);
        assert_eq!(registry.default_model(), "scripted/demo");
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_is_an_error() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![Ok(Bytes::from_static(
            br#"{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}"#,
        ))];
        let state = StreamState {
            bytes: Box::pin(futures::stream::iter(chunks)),
            lines: LineSplitter::default(),
            calls: Calls::default(),
            pending: VecDeque::new(),
            done: false,
            failed: None,
            idle_timeout: Duration::from_secs(5),
        };
        let events: Vec<_> = futures::stream::unfold(state, next_event).collect().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0].as_ref().unwrap(),
            &ProviderEvent::Text("Hel".into())
        );
        assert_eq!(
            events[1].as_ref().unwrap_err().kind,
            ProviderErrorKind::Connect
        );
    }

    fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn tools_calls_and_results_use_the_native_format() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "qwen3".into(),
            messages: vec![
                msg(ChatRole::User, "Weather and time in Paris?"),
                ChatMessage {
                    role: ChatRole::Assistant,
                    tool_calls: vec![
                        call("call_0", "weather", json!({"city": "Paris"})),
                        call("call_1", "time", Value::Null),
                    ],
                    ..Default::default()
                },
                ChatMessage {
                    role: ChatRole::Tool,
                    content: "18°C".into(),
                    tool_call_id: Some("call_0".into()),
                    tool_name: Some("weather".into()),
                    ..Default::default()
                },
                // No tool name: found through the call id.
                ChatMessage {
                    role: ChatRole::Tool,
                    content: "clock broke".into(),
                    tool_call_id: Some("call_1".into()),
                    is_error: true,
                    ..Default::default()
                },
            ],
            tools: vec![crate::ToolSpec {
                name: "weather".into(),
                description: "Weather of a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            tool_choice: Some(crate::ToolChoice::Required),
            ..Default::default()
        });
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {
                "name": "weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }}])
        );
        assert!(body.get("tool_choice").is_none(), "Ollama has none");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "Weather and time in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "time", "arguments": {}}},
                ]},
                {"role": "tool", "content": "18°C", "tool_name": "weather"},
                {"role": "tool", "content": "clock broke", "tool_name": "time"},
            ])
        );
    }

    #[test]
    fn tool_calls_in_one_line_become_calls_and_finish_with_tool_calls() {
        let (events, done) = parse_all(&[
            r#"{"model":"qwen3","message":{"role":"assistant","content":"Checking."},"done":false}"#,
            r#"{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Paris"}}},{"function":{"index":1,"name":"time","arguments":{}}}]},"done":false}"#,
            r#"{"model":"qwen3","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":40,"eval_count":30}"#,
        ])
        .unwrap();
        assert!(done);
        assert_eq!(
            events,
            vec![
                ProviderEvent::Text("Checking.".into()),
                ProviderEvent::ToolCall(call("call_0", "weather", json!({"city": "Paris"}))),
                ProviderEvent::ToolCall(call("call_1", "time", json!({}))),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 40,
                    completion_tokens: 30,
                    estimated: false,
                    ..Default::default()
                }),
                ProviderEvent::Finished("tool_calls".into()),
            ]
        );
        // Ids from the server are kept, missing arguments are `{}`, and numbering goes
        // on across lines.
        let (events, _) = parse_all(&[
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{}}}]},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"srv-1","function":{"name":"b"}},{"function":{"name":"c","arguments":"{\"x\":1}"}}]},"done":false}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::ToolCall(call("call_0", "a", json!({}))),
                ProviderEvent::ToolCall(call("srv-1", "b", json!({}))),
                ProviderEvent::ToolCall(call("call_2", "c", json!({"x": 1}))),
            ]
        );
    }

    #[test]
    fn malformed_tool_arguments_are_a_protocol_error_naming_the_tool() {
        let mut out = VecDeque::new();
        let err = parse_line(
            br#"{"message":{"role":"assistant","content":"hi","tool_calls":[{"function":{"name":"weather","arguments":"{\"city\":"}}]},"done":false}"#,
            &mut Calls::default(),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Protocol);
        assert!(err.message.contains("\"weather\""), "{}", err.message);
        assert!(out.is_empty(), "a failed line queues nothing");
        let err = parse_all(&[
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"t","arguments":[1]}}]},"done":false}"#,
        ])
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Protocol);
    }
}
