//! Anthropic Messages API, streamed.
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
//! Continuation uses the API's native assistant prefill: the partial reply is the
//! final assistant message and the model goes on from its last character.

use super::{
    ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, Usage,
};
use crate::config::ProviderConfig;
use crate::secret::Secret;
use eventsource_stream::Eventsource;
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
    client: reqwest::Client,
    /// The full `.../v1/messages` URL.
    url: String,
    api_key: Option<Secret>,
    headers: Vec<(String, Secret)>,
    params: serde_json::Map<String, Value>,
    idle_timeout: Duration,
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
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .build()
            .unwrap_or_default();
        Self {
            client,
            url: messages_url(cfg.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)),
            api_key: cfg.api_key.clone().filter(|k| !k.is_empty()),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            params: cfg.params.clone(),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        }
    }

    fn prepare(&self, request: &ChatRequest) -> Prepared {
        let mut system: Vec<&str> = Vec::new();
        let mut messages: Vec<(&'static str, String)> = Vec::new();
        for m in &request.messages {
            let role = match m.role {
                ChatRole::System => {
                    if !m.content.trim().is_empty() {
                        system.push(&m.content);
                    }
                    continue;
                }
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            };
            if m.content.trim().is_empty() {
                // The API rejects empty text content.
                tracing::debug!(role, "anthropic: dropping an empty message");
                continue;
            }
            push_turn(&mut messages, role, &m.content);
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
                push_turn(&mut messages, "assistant", kept);
            }
        } else if let Some((role, content)) = messages.last_mut()
            && *role == "assistant"
            && content.trim_end().len() != content.len()
        {
            // A history that ends with an assistant turn is a prefill to the API too.
            tracing::debug!("anthropic: trimming trailing whitespace off the last assistant turn");
            content.truncate(content.trim_end().len());
        }

        let messages: Vec<Value> = messages
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
            "stream": true,
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
        // Configured extras pass through as they are, over the normalized fields.
        for (k, v) in &self.params {
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

/// Appends a turn, merging it into the previous one of the same role (the API wants
/// user and assistant turns to alternate).
fn push_turn(messages: &mut Vec<(&'static str, String)>, role: &'static str, content: &str) {
    match messages.last_mut() {
        Some((last, text)) if *last == role => {
            text.push_str("\n\n");
            text.push_str(content);
        }
        _ => messages.push((role, content.to_string())),
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
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let Prepared { body, strip } = self.prepare(&request);
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = &self.api_key {
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
        for (name, value) in &self.headers {
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
        let req = self.client.post(&self.url).headers(headers).json(&body);
        let response = tokio::time::timeout(self.idle_timeout, req.send())
            .await
            .map_err(|_| {
                ProviderError::new(ProviderErrorKind::Timeout, "no response headers in time")
            })?
            .map_err(|e| transport_error(&e))?;
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
        let state = StreamState {
            events: Box::pin(response.bytes_stream().eventsource()),
            pending: VecDeque::new(),
            finished: false,
            idle_timeout: self.idle_timeout,
            parser: EventParser::new(strip),
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
    finished: bool,
    idle_timeout: Duration,
    parser: EventParser,
}

async fn next_event(
    mut state: StreamState,
) -> Option<(Result<ProviderEvent, ProviderError>, StreamState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if state.finished {
            return None;
        }
        let next = match tokio::time::timeout(state.idle_timeout, state.events.next()).await {
            Err(_) => {
                state.finished = true;
                let err = ProviderError::new(ProviderErrorKind::Timeout, "the stream went idle");
                return Some((Err(err), state));
            }
            Ok(next) => next,
        };
        match next {
            None => {
                state.finished = true;
                let err = ProviderError::new(
                    ProviderErrorKind::Connect,
                    "the stream ended before message_stop",
                );
                return Some((Err(err), state));
            }
            Some(Err(e)) => {
                state.finished = true;
                let err =
                    ProviderError::new(ProviderErrorKind::Connect, format!("stream broke: {e}"));
                return Some((Err(err), state));
            }
            Some(Ok(event)) => {
                if event.data.trim().is_empty() {
                    continue;
                }
                match state.parser.parse(&event.data, &mut state.pending) {
                    Err(err) => {
                        state.finished = true;
                        return Some((Err(err), state));
                    }
                    Ok(()) => state.finished = state.parser.stopped,
                }
            }
        }
    }
}

/// The data of one server-sent event, by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        content_block: WireBlock,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: WireError,
    },
    /// Event types added after this code was written.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    /// `tool_use`, `redacted_thinking`, ...: not handled yet.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    /// `signature_delta`, `input_json_delta`, `citations_delta`: tools come later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

/// Usage as the API reports it; `message_delta` carries cumulative counts.
#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every count `newer` reports.
    fn update(&mut self, newer: WireUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Turns the events of one message into [`ProviderEvent`]s.
struct EventParser {
    usage: Option<WireUsage>,
    stop_reason: Option<String>,
    /// Whitespace still to drop from the start of the text (see [`Prepared::strip`]).
    strip: String,
    /// `message_stop` arrived: the message is complete.
    stopped: bool,
}

impl EventParser {
    fn new(strip: String) -> Self {
        Self {
            usage: None,
            stop_reason: None,
            strip,
            stopped: false,
        }
    }

    fn parse(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        let event: WireEvent = serde_json::from_str(data).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed event ({e}): {}", truncate(data, 200)),
            )
        })?;
        match event {
            WireEvent::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.usage.get_or_insert_default().update(u);
                }
            }
            WireEvent::ContentBlockStart { content_block } => match content_block {
                WireBlock::Text { text } => self.text(&text, out),
                WireBlock::Thinking { thinking } if !thinking.is_empty() => {
                    out.push_back(ProviderEvent::Reasoning(thinking));
                }
                _ => {}
            },
            WireEvent::ContentBlockDelta { delta } => match delta {
                WireDelta::TextDelta { text } => self.text(&text, out),
                WireDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    out.push_back(ProviderEvent::Reasoning(thinking));
                }
                _ => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(reason);
                }
                if let Some(u) = usage {
                    self.usage.get_or_insert_default().update(u);
                }
            }
            WireEvent::MessageStop {} => {
                self.stopped = true;
                if let Some(u) = self.usage {
                    out.push_back(ProviderEvent::Usage(Usage {
                        prompt_tokens: u.input_tokens.unwrap_or(0)
                            + u.cache_read_input_tokens.unwrap_or(0)
                            + u.cache_creation_input_tokens.unwrap_or(0),
                        completion_tokens: u.output_tokens.unwrap_or(0),
                        estimated: false,
                    }));
                }
                let reason = self.stop_reason.as_deref().unwrap_or("end_turn");
                out.push_back(ProviderEvent::Finished(normalize_stop_reason(reason)));
            }
            WireEvent::Error { error } => return Err(stream_error(&error)),
            WireEvent::ContentBlockStop {} | WireEvent::Ping {} | WireEvent::Unknown => {}
        }
        Ok(())
    }

    /// Emits text, first dropping whatever part of the prefill's trimmed whitespace the
    /// model repeats at its start.
    fn text(&mut self, text: &str, out: &mut VecDeque<ProviderEvent>) {
        let mut text = text;
        if !self.strip.is_empty() && !text.is_empty() {
            let common: usize = self
                .strip
                .chars()
                .zip(text.chars())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a.len_utf8())
                .sum();
            if common == text.len() {
                // All of it was repeated whitespace; more may follow in the next delta.
                self.strip.drain(..common);
                return;
            }
            text = &text[common..];
            self.strip.clear();
        }
        if !text.is_empty() {
            out.push_back(ProviderEvent::Text(text.to_string()));
        }
    }
}

/// The API's `stop_reason` as a normalized finish reason.
fn normalize_stop_reason(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

fn stream_error(error: &WireError) -> ProviderError {
    let kind = match error.kind.as_str() {
        "overloaded_error" | "api_error" => ProviderErrorKind::Server,
        "rate_limit_error" => ProviderErrorKind::RateLimited,
        _ => ProviderErrorKind::Upstream,
    };
    let message = if error.message.is_empty() {
        "the provider reported an error mid-stream"
    } else {
        &error.message
    };
    if error.kind.is_empty() {
        ProviderError::new(kind, message)
    } else {
        ProviderError::new(kind, format!("{}: {message}", error.kind))
    }
}

fn transport_error(e: &reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        ProviderErrorKind::Timeout
    } else {
        ProviderErrorKind::Connect
    };
    ProviderError::new(kind, format!("request failed: {e}"))
}

fn status_kind(status: u16) -> ProviderErrorKind {
    match status {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        408 => ProviderErrorKind::Timeout,
        // 529 is Anthropic's "overloaded".
        500..=599 => ProviderErrorKind::Server,
        _ => ProviderErrorKind::BadRequest,
    }
}

/// `retry-after` in seconds (Anthropic sends an integer).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The provider's own message from a `{"type":"error","error":{"type","message"}}`
/// body, else the start of the body.
fn error_message(status: u16, body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    match (kind, message) {
        (Some(kind), Some(message)) => format!("HTTP {status} {kind}: {message}"),
        (None, Some(message)) => format!("HTTP {status}: {message}"),
        _ => format!("HTTP {status}: {}", truncate(body, 300)),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
