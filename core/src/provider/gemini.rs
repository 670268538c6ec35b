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
//! A safety block is not a failure: the run ends with finish reason `content_filter`
//! and whatever text came before it, so the user sees why the reply stopped.

use super::wire::{self, truncate};
use super::{
    ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
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

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The API takes at most five stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

/// The instruction that turns a partial reply into a continuation (Gemini has no
/// assistant prefill).
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

pub struct GeminiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    headers: Vec<(String, Secret)>,
    params: serde_json::Map<String, Value>,
    idle_timeout: Duration,
}

impl GeminiProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            client: wire::client(cfg.connect_timeout_secs),
            base_url: wire::base_url(cfg.base_url.as_deref(), DEFAULT_BASE_URL),
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

    fn url(&self, model: &str) -> String {
        // Accept both `gemini-2.5-flash` and the API's own `models/gemini-2.5-flash`.
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!(
            "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self.base_url
        )
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut system: Vec<Value> = Vec::new();
        let mut contents: Vec<Value> = Vec::new();
        for m in &request.messages {
            if m.content.is_empty() {
                continue; // the API rejects empty parts
            }
            match m.role {
                ChatRole::System => system.push(json!({"text": m.content})),
                ChatRole::User => push_turn(&mut contents, "user", &m.content),
                ChatRole::Assistant => push_turn(&mut contents, "model", &m.content),
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
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        if !config.is_empty() {
            body.insert("generationConfig".into(), Value::Object(config));
        }
        // Configured extras (e.g. `safetySettings`, or `generationConfig.topK`) merge
        // over the normalized fields.
        wire::merge_json(&mut body, &self.params);
        Value::Object(body)
    }
}

/// Appends a turn, merging it into the previous one when the role repeats (the API
/// wants user and model turns to alternate).
fn push_turn(contents: &mut Vec<Value>, role: &str, text: &str) {
    if let Some(last) = contents.last_mut()
        && last["role"] == role
        && let Some(parts) = last["parts"].as_array_mut()
    {
        parts.push(json!({"text": text}));
        return;
    }
    contents.push(json!({"role": role, "parts": [{"text": text}]}));
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
            .client
            .post(self.url(&request.model))
            .json(&self.body(&request));
        if let Some(key) = &self.api_key {
            req = req.header("x-goog-api-key", key.expose());
        }
        let req = wire::with_headers(req, &self.headers);
        let response = wire::send(req, self.idle_timeout).await?;
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
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
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

/// Turns one `GenerateContentResponse` into events (text and thoughts at once; usage
/// and the finish reason are kept in `turn` for the end of the stream).
fn parse_chunk(
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
        if u.cached_content_token_count > 0 {
            tracing::debug!(
                cached = u.cached_content_token_count,
                prompt = u.prompt_token_count,
                "gemini: part of the prompt came from the cache"
            );
        }
        turn.usage = Some(Usage {
            prompt_tokens: u.prompt_token_count,
            // Thinking tokens are billed as output.
            completion_tokens: u.candidates_token_count + u.thoughts_token_count,
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
    let kind = if api_status == "RESOURCE_EXHAUSTED" {
        ProviderErrorKind::RateLimited
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
mod tests {
    use super::*;
    use crate::provider::ChatMessage;

    fn provider(params: Value) -> GeminiProvider {
        let mut cfg = crate::config::Config::default()
            .effective_providers()
            .remove(0);
        cfg.params = params.as_object().cloned().unwrap_or_default();
        GeminiProvider::new(&cfg)
    }

    fn msg(role: ChatRole, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    fn parse_all(chunks: &[&str]) -> Result<Vec<ProviderEvent>, ProviderError> {
        let mut turn = Turn::default();
        let mut out = VecDeque::new();
        for c in chunks {
            parse_chunk(c, &mut turn, &mut out)?;
        }
        turn.close(&mut out)?;
        Ok(Vec::from(out))
    }

    #[test]
    fn body_has_system_instruction_merged_turns_and_generation_config() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "gemini-2.5-flash".into(),
            messages: vec![
                msg(ChatRole::System, "Be brief."),
                msg(ChatRole::User, "one"),
                msg(ChatRole::User, "two"),
                msg(ChatRole::Assistant, "ok"),
                msg(ChatRole::System, "Answer in French."),
                msg(ChatRole::User, "three"),
            ],
            temperature: Some(0.5),
            top_p: Some(0.9),
            max_output_tokens: Some(100),
            stop: vec!["a", "b", "c", "d", "e", "f", "g"]
                .into_iter()
                .map(String::from)
                .collect(),
            ..Default::default()
        });
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]})
        );
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "ok"}]},
                {"role": "user", "parts": [{"text": "three"}]},
            ])
        );
        let config = &body["generationConfig"];
        assert_eq!(config["temperature"], 0.5);
        assert_eq!(config["topP"], json!(0.9f32));
        assert_eq!(config["maxOutputTokens"], 100);
        assert_eq!(
            config["stopSequences"],
            json!(["a", "b", "c", "d", "e"]),
            "clamped to five"
        );
        assert!(config.get("thinkingConfig").is_none());
    }

    #[test]
    fn body_without_options_has_no_generation_config() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "m".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            ..Default::default()
        });
        assert!(body.get("generationConfig").is_none(), "{body}");
        assert!(body.get("systemInstruction").is_none(), "{body}");
    }

    #[test]
    fn reasoning_effort_sets_a_thinking_budget() {
        for (effort, budget) in [("low", 1024), ("medium", 8192), ("high", 24576)] {
            let body = provider(json!({})).body(&ChatRequest {
                model: "m".into(),
                messages: vec![msg(ChatRole::User, "hi")],
                reasoning_effort: Some(effort.into()),
                ..Default::default()
            });
            assert_eq!(
                body["generationConfig"]["thinkingConfig"],
                json!({"thinkingBudget": budget, "includeThoughts": true})
            );
        }
    }

    #[test]
    fn params_merge_into_the_body() {
        let body = provider(json!({
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "generationConfig": {"topK": 40},
        }))
        .body(&ChatRequest {
            model: "m".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            temperature: Some(1.0),
            ..Default::default()
        });
        assert_eq!(
            body["generationConfig"],
            json!({"temperature": 1.0, "topK": 40})
        );
        assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
    }

    #[test]
    fn continuation_adds_the_partial_as_a_model_turn_and_an_instruction() {
        let body = provider(json!({})).body(&ChatRequest {
            model: "m".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            prefill: Some("Hello, wor".into()),
            ..Default::default()
        });
        let contents = body["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert_eq!(
            contents[1],
            json!({"role": "model", "parts": [{"text": "Hello, wor"}]})
        );
        assert_eq!(contents[2]["role"], "user");
        assert_eq!(contents[2]["parts"][0]["text"], CONTINUE_INSTRUCTION);
    }

    #[test]
    fn url_names_the_model_and_asks_for_sse() {
        let p = provider(json!({}));
        assert_eq!(
            p.url("gemini-2.5-flash"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(p.url("models/gemini-2.5-flash"), p.url("gemini-2.5-flash"));
    }

    #[test]
    fn chunks_parse_into_text_thoughts_usage_and_finish() {
        let events = parse_all(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Let me think.","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":12,"totalTokenCount":12},"modelVersion":"gemini-2.5-flash"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1,"thoughtsTokenCount":30,"totalTokenCount":43}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"lo."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2,"thoughtsTokenCount":30,"cachedContentTokenCount":4,"totalTokenCount":44}}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::Reasoning("Let me think.".into()),
                ProviderEvent::Text("Hel".into()),
                ProviderEvent::Text("lo.".into()),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 32,
                    estimated: false
                }),
                ProviderEvent::Finished("stop".into()),
            ]
        );
    }

    #[test]
    fn finish_reasons_are_normalized() {
        for (raw, normalized) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
            ("OTHER", "other"),
        ] {
            assert_eq!(finish_reason(raw), normalized);
        }
    }

    #[test]
    fn a_safety_stop_keeps_the_text_and_finishes_with_content_filter() {
        let events = parse_all(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Some text"}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2,"totalTokenCount":7}}"#,
        ])
        .unwrap();
        assert_eq!(events[0], ProviderEvent::Text("Some text".into()));
        assert_eq!(
            events.last(),
            Some(&ProviderEvent::Finished("content_filter".into()))
        );
    }

    #[test]
    fn a_blocked_prompt_finishes_with_content_filter_and_no_text() {
        let events = parse_all(&[
            r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"HIGH"}]},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 8,
                    completion_tokens: 0,
                    estimated: false
                }),
                ProviderEvent::Finished("content_filter".into()),
            ]
        );
    }

    #[test]
    fn a_stream_without_finish_reason_is_an_error() {
        let err = parse_all(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}]}"#,
        ])
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Connect);
        assert!(err.is_retryable());
    }

    #[test]
    fn malformed_and_error_chunks_are_errors() {
        let mut turn = Turn::default();
        let mut out = VecDeque::new();
        assert_eq!(
            parse_chunk("{not json", &mut turn, &mut out)
                .unwrap_err()
                .kind,
            ProviderErrorKind::Protocol
        );
        assert_eq!(
            parse_chunk(r#"{"candidates":"nope"}"#, &mut turn, &mut out)
                .unwrap_err()
                .kind,
            ProviderErrorKind::Protocol
        );
        let err = parse_chunk(
            r#"{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}"#,
            &mut turn,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Upstream);
        assert_eq!(err.message, "An internal error has occurred.");
    }

    #[test]
    fn http_errors_are_classified() {
        let body = r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}"#;
        let err = http_error(429, body, None);
        assert_eq!(err.kind, ProviderErrorKind::RateLimited);
        assert_eq!(
            err.message,
            "HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota."
        );
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            http_error(429, body, Some(Duration::from_secs(3))).retry_after,
            Some(Duration::from_secs(3)),
            "the header wins"
        );
        let cases = [
            (400, "INVALID_ARGUMENT", ProviderErrorKind::BadRequest),
            (401, "UNAUTHENTICATED", ProviderErrorKind::Auth),
            (403, "PERMISSION_DENIED", ProviderErrorKind::Auth),
            (404, "NOT_FOUND", ProviderErrorKind::BadRequest),
            (500, "INTERNAL", ProviderErrorKind::Server),
            (503, "UNAVAILABLE", ProviderErrorKind::Server),
        ];
        for (code, status, kind) in cases {
            let body =
                format!(r#"{{"error":{{"code":{code},"message":"m","status":"{status}"}}}}"#);
            let err = http_error(code, &body, None);
            assert_eq!(err.kind, kind, "{code}");
            assert_eq!(err.message, format!("HTTP {code} {status}: m"));
        }
        // The array form streaming endpoints use without alt=sse, and a non-JSON body.
        let err = http_error(
            503,
            r#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#,
            None,
        );
        assert_eq!(
            err.message,
            "HTTP 503 UNAVAILABLE: The model is overloaded."
        );
        assert!(err.is_retryable());
        assert_eq!(
            http_error(502, "Bad Gateway", None).message,
            "HTTP 502: Bad Gateway"
        );
    }
}
