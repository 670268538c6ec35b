//! OpenAI Chat Completions, streamed: the wire format of OpenAI and of every
//! OpenAI-compatible server (vLLM, LM Studio, OpenRouter, Groq, LiteLLM...).
//!
//! Request: `POST {base_url}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`. Response: server-sent events whose data is a
//! `chat.completion.chunk`, ending with `data: [DONE]`; the usage arrives in a last
//! chunk with empty `choices`.

use super::{
    ChatMessage, ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, Usage,
};
use crate::config::ProviderConfig;
use crate::secret::Secret;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

/// The instruction that turns a partial assistant reply into a continuation on APIs
/// without assistant prefill.
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    headers: Vec<(String, Secret)>,
    params: serde_json::Map<String, Value>,
    idle_timeout: Duration,
}

impl OpenAiProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .build()
            .unwrap_or_default();
        Self {
            client,
            base_url: cfg
                .base_url
                .clone()
                .unwrap_or_else(|| "https://api.openai.com/v1".into())
                .trim_end_matches('/')
                .to_string(),
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

    fn body(&self, request: &ChatRequest) -> Value {
        let mut messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
            messages.push(json!({"role": "assistant", "content": partial}));
            messages.push(json!({"role": "user", "content": CONTINUE_INSTRUCTION}));
        }
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
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
        // Configured extras pass through as they are, over the normalized fields.
        for (k, v) in &self.params {
            body[k] = v.clone();
        }
        body
    }
}

fn message_json(m: &ChatMessage) -> Value {
    let role = match m.role {
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    };
    json!({"role": role, "content": m.content})
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut req = self.client.post(&url).json(&self.body(&request));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        for (name, value) in &self.headers {
            req = req.header(name, value.expose());
        }
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
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.text().await.unwrap_or_default();
            let mut err = ProviderError::new(
                status_kind(status.as_u16()),
                error_message(status.as_u16(), &body),
            );
            err.retry_after = retry_after;
            return Err(err);
        }
        let events = response.bytes_stream().eventsource();
        let state = ChunkState {
            events: Box::pin(events),
            pending: VecDeque::new(),
            finished: false,
            idle_timeout: self.idle_timeout,
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

struct ChunkState {
    events: SseStream,
    pending: VecDeque<ProviderEvent>,
    finished: bool,
    idle_timeout: Duration,
}

async fn next_event(
    mut state: ChunkState,
) -> Option<(Result<ProviderEvent, ProviderError>, ChunkState)> {
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
                    "the stream ended before [DONE]",
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
                if event.data.trim() == "[DONE]" {
                    state.finished = true;
                    continue;
                }
                if event.data.trim().is_empty() {
                    continue;
                }
                if let Err(err) = parse_chunk(&event.data, &mut state.pending) {
                    state.finished = true;
                    return Some((Err(err), state));
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChunkUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    /// Sent by reasoning models on several compatible servers (DeepSeek, vLLM).
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Turns one `chat.completion.chunk` into events.
fn parse_chunk(data: &str, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
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
    for choice in chunk.choices {
        if let Some(r) = choice.delta.reasoning_content.filter(|r| !r.is_empty()) {
            out.push_back(ProviderEvent::Reasoning(r));
        }
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            out.push_back(ProviderEvent::Text(text));
        }
        if let Some(reason) = choice.finish_reason {
            out.push_back(ProviderEvent::Finished(reason));
        }
    }
    if let Some(u) = chunk.usage {
        out.push_back(ProviderEvent::Usage(Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            estimated: false,
        }));
    }
    Ok(())
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

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_parse_into_events() {
        let mut out = VecDeque::new();
        parse_chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
            &mut out,
        )
        .unwrap();
        parse_chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            &mut out,
        )
        .unwrap();
        parse_chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            Vec::from(out),
            vec![
                ProviderEvent::Text("Hel".into()),
                ProviderEvent::Finished("stop".into()),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 2,
                    estimated: false
                }),
            ]
        );
    }

    #[test]
    fn errors_are_classified() {
        let mut out = VecDeque::new();
        let err = parse_chunk(
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Upstream);
        assert_eq!(err.message, "overloaded");
        assert_eq!(
            parse_chunk("{not json", &mut out).unwrap_err().kind,
            ProviderErrorKind::Protocol
        );
        assert!(ProviderError::new(status_kind(429), "").is_retryable());
        assert!(ProviderError::new(status_kind(503), "").is_retryable());
        assert!(!ProviderError::new(status_kind(401), "").is_retryable());
        assert!(!ProviderError::new(status_kind(400), "").is_retryable());
        assert_eq!(
            error_message(429, r#"{"error":{"message":"Rate limit reached"}}"#),
            "HTTP 429: Rate limit reached"
        );
    }

    #[test]
    fn continuation_appends_partial_and_instruction() {
        let mut cfg = crate::config::Config::default()
            .effective_providers()
            .remove(0);
        cfg.params.insert("seed".into(), json!(7));
        let body = OpenAiProvider::new(&cfg).body(&ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: "hi".into(),
            }],
            prefill: Some("Hello, wor".into()),
            ..Default::default()
        });
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["role"], "assistant");
        assert_eq!(messages[1]["content"], "Hello, wor");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["seed"], 7, "configured params pass through");
    }
}
