//! The Anthropic stream's events: their wire shapes, and the parser that turns them
//! into normalized provider events (assembling streamed tool input), plus the mapping
//! of the API's errors.

use super::*;

/// The data of one server-sent event, by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: WireDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u64,
    },
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
pub(super) struct StartMessage {
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        id: String,
        name: String,
        /// Empty (`{}`) when streaming: the input comes as `input_json_delta`s.
        #[serde(default)]
        input: Value,
    },
    /// `redacted_thinking`, `server_tool_use`, ...: not handled.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// `signature_delta`, `citations_delta`, ...: not handled.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
pub(super) struct MessageDeltaBody {
    pub(super) stop_reason: Option<String>,
}

/// Usage as the API reports it; `message_delta` carries cumulative counts.
#[derive(Deserialize, Default, Clone, Copy)]
pub(super) struct WireUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every count `newer` reports.
    pub(super) fn update(&mut self, newer: WireUsage) {
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
pub(super) struct WireError {
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) message: String,
}

/// Turns the events of one message into [`ProviderEvent`]s.
pub(super) struct EventParser {
    pub(super) usage: Option<WireUsage>,
    pub(super) stop_reason: Option<String>,
    /// Whitespace still to drop from the start of the text (see [`Prepared::strip`]).
    pub(super) strip: String,
    /// `message_stop` arrived: the message is complete.
    pub(super) stopped: bool,
    /// `tool_use` blocks still streaming their input, by block index.
    pub(super) tools: Vec<PendingTool>,
}

/// A `tool_use` block whose input is still arriving.
pub(super) struct PendingTool {
    pub(super) index: u64,
    pub(super) id: String,
    pub(super) name: String,
    /// The `input` of `content_block_start` (normally `{}`).
    pub(super) start_input: Value,
    /// The concatenated `partial_json` fragments.
    pub(super) json: String,
}

impl PendingTool {
    /// The complete call: the concatenated fragments parsed (nothing streamed: the
    /// start's input, else `{}`).
    pub(super) fn finish(self) -> Result<ToolCall, ProviderError> {
        let arguments = if self.json.trim().is_empty() {
            match self.start_input {
                Value::Null => json!({}),
                input => input,
            }
        } else {
            serde_json::from_str(&self.json).map_err(|e| {
                ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!(
                        "malformed arguments of tool call {:?} ({e}): {}",
                        self.name,
                        truncate(&self.json, 200)
                    ),
                )
            })?
        };
        Ok(ToolCall {
            id: self.id,
            name: self.name,
            arguments,
        })
    }
}

impl EventParser {
    pub(super) fn new(strip: String) -> Self {
        Self {
            usage: None,
            stop_reason: None,
            strip,
            stopped: false,
            tools: Vec::new(),
        }
    }

    pub(super) fn parse(
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
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } => self.text(&text, out),
                WireBlock::Thinking { thinking } if !thinking.is_empty() => {
                    out.push_back(ProviderEvent::Reasoning(thinking));
                }
                WireBlock::ToolUse { id, name, input } => self.tools.push(PendingTool {
                    index,
                    id,
                    name,
                    start_input: input,
                    json: String::new(),
                }),
                _ => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } => self.text(&text, out),
                WireDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    out.push_back(ProviderEvent::Reasoning(thinking));
                }
                WireDelta::InputJsonDelta { partial_json } => {
                    match self.tools.iter_mut().find(|t| t.index == index) {
                        Some(tool) => tool.json.push_str(&partial_json),
                        None => {
                            return Err(ProviderError::new(
                                ProviderErrorKind::Protocol,
                                format!("input_json_delta for block {index}, which is no tool_use"),
                            ));
                        }
                    }
                }
                _ => {}
            },
            WireEvent::ContentBlockStop { index } => {
                if let Some(at) = self.tools.iter().position(|t| t.index == index) {
                    let call = self.tools.remove(at).finish()?;
                    out.push_back(ProviderEvent::ToolCall(call));
                }
            }
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
                // A tool_use block that never got its content_block_stop is complete
                // once the message is.
                for tool in std::mem::take(&mut self.tools) {
                    out.push_back(ProviderEvent::ToolCall(tool.finish()?));
                }
                if let Some(u) = self.usage {
                    out.push_back(ProviderEvent::Usage(Usage {
                        prompt_tokens: u.input_tokens.unwrap_or(0)
                            + u.cache_read_input_tokens.unwrap_or(0)
                            + u.cache_creation_input_tokens.unwrap_or(0),
                        completion_tokens: u.output_tokens.unwrap_or(0),
                        cached_prompt_tokens: u.cache_read_input_tokens.unwrap_or(0),
                        estimated: false,
                        ..Default::default()
                    }));
                }
                let reason = self.stop_reason.as_deref().unwrap_or("end_turn");
                out.push_back(ProviderEvent::Finished(normalize_stop_reason(reason)));
            }
            WireEvent::Error { error } => return Err(stream_error(&error)),
            WireEvent::Ping {} | WireEvent::Unknown => {}
        }
        Ok(())
    }

    /// Emits text, first dropping whatever part of the prefill's trimmed whitespace the
    /// model repeats at its start.
    pub(super) fn text(&mut self, text: &str, out: &mut VecDeque<ProviderEvent>) {
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
pub(super) fn normalize_stop_reason(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

pub(super) fn stream_error(error: &WireError) -> ProviderError {
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

pub(super) fn status_kind(status: u16) -> ProviderErrorKind {
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
impl wire::SseParser for EventParser {
    const END: &'static str = "message_stop";

    fn parse(
        &mut self,
        data: &str,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<bool, ProviderError> {
        EventParser::parse(self, data, out)?;
        Ok(self.stopped)
    }
}

pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The provider's own message from a `{"type":"error","error":{"type","message"}}`
/// body, else the start of the body.
pub(super) fn error_message(status: u16, body: &str) -> String {
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

pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The events of a whole (unstreamed) Message, as some gateways answer a streaming
/// request (LiteLLM's mock responses do): its content blocks, usage and stop reason
/// replayed through [`EventParser`] as the stream would have carried them.
pub(super) fn whole_message(
    body: &str,
    strip: String,
) -> Result<Vec<ProviderEvent>, ProviderError> {
    let message: Value = serde_json::from_str(body).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!("malformed message ({e}): {}", truncate(body, 200)),
        )
    })?;
    if message.get("type").and_then(Value::as_str) == Some("error") {
        let error: WireError = serde_json::from_value(message["error"].clone()).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed error ({e})"),
            )
        })?;
        return Err(stream_error(&error));
    }
    let usage = message.get("usage").cloned().unwrap_or(Value::Null);
    let mut events = vec![json!({"type": "message_start", "message": {"usage": usage}})];
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    for (index, block) in blocks.into_iter().enumerate() {
        events.push(json!({"type": "content_block_start", "index": index, "content_block": block}));
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"]},
        "usage": usage,
    }));
    events.push(json!({"type": "message_stop"}));
    let mut parser = EventParser::new(strip);
    let mut out = VecDeque::new();
    for event in events {
        parser.parse(&event.to_string(), &mut out)?;
    }
    Ok(out.into())
}
