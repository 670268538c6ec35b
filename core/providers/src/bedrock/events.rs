//! The ConverseStream response: `application/vnd.amazon.eventstream` frames.
//!
//! Each frame is a prelude (total and headers length, CRC), headers, a payload and a
//! message CRC; [`MessageFrameDecoder`] checks both CRCs and keeps a frame split over
//! several HTTP chunks until it is whole. The headers say what the payload (JSON) is:
//!
//! - `:message-type: event` with `:event-type` `messageStart`, `contentBlockStart`
//!   (`start.toolUse {toolUseId, name}`), `contentBlockDelta` (`delta.text`,
//!   `delta.reasoningContent.text`, `delta.toolUse.input`, a JSON text in fragments),
//!   `contentBlockStop` (a tool call is complete), `messageStop` (`stopReason`) and
//!   `metadata` (`usage`), the last event.
//! - `:message-type: exception` with `:exception-type` (`throttlingException`,
//!   `modelStreamErrorException`, `validationException`, `internalServerException`,
//!   `serviceUnavailableException`) and `{"message": ...}`.
//! - `:message-type: error` with `:error-code` and `:error-message` headers.
//!
//! `Finished` goes out after the metadata's usage; a stream that ends without
//! `messageStop` was cut.

use super::super::wire::truncate;
use super::super::{
    ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream, ToolCall, Usage,
};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub(super) type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The provider events of a ConverseStream response body.
pub(super) fn stream(bytes: ByteStream, idle_timeout: Duration) -> ProviderStream {
    let state = State {
        bytes,
        buffer: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        parser: EventParser::default(),
        pending: VecDeque::new(),
        error: None,
        done: false,
        idle_timeout,
    };
    futures::stream::unfold(state, next_event).boxed()
}

struct State {
    bytes: ByteStream,
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    parser: EventParser,
    pending: VecDeque<ProviderEvent>,
    /// An error to report once `pending` is drained.
    error: Option<ProviderError>,
    done: bool,
    idle_timeout: Duration,
}

async fn next_event(mut state: State) -> Option<(Result<ProviderEvent, ProviderError>, State)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if let Some(err) = state.error.take() {
            return Some((Err(err), state));
        }
        if state.done || state.parser.finished {
            return None;
        }
        let next = match tokio::time::timeout(state.idle_timeout, state.bytes.next()).await {
            Err(_) => {
                state.done = true;
                let err = ProviderError::new(ProviderErrorKind::Timeout, "the stream went idle");
                return Some((Err(err), state));
            }
            Ok(next) => next,
        };
        match next {
            None => {
                state.done = true;
                if let Err(err) = state.parser.end(&mut state.pending) {
                    state.error = Some(err);
                }
            }
            Some(Err(e)) => {
                state.done = true;
                state.error = Some(ProviderError::new(
                    ProviderErrorKind::Connect,
                    format!("stream broke: {e}"),
                ));
            }
            Some(Ok(chunk)) => {
                state.buffer.extend_from_slice(&chunk);
                if let Err(err) = feed(&mut state) {
                    state.done = true;
                    state.error = Some(err);
                }
            }
        }
    }
}

/// Decodes every whole frame in the buffer into events.
fn feed(state: &mut State) -> Result<(), ProviderError> {
    while !state.parser.finished {
        let frame = state.decoder.decode_frame(&mut state.buffer).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                format!("malformed event-stream frame: {e}"),
            )
        })?;
        match frame {
            DecodedFrame::Incomplete => break,
            DecodedFrame::Complete(message) => {
                state.parser.message(&message, &mut state.pending)?
            }
        }
    }
    Ok(())
}

/// A string header of a message.
fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// The error kind of a ConverseStream exception.
fn exception_kind(name: &str) -> ProviderErrorKind {
    match name {
        "throttlingException" => ProviderErrorKind::RateLimited,
        "internalServerException" | "serviceUnavailableException" | "modelStreamErrorException" => {
            ProviderErrorKind::Server
        }
        "validationException" => ProviderErrorKind::BadRequest,
        _ => ProviderErrorKind::Upstream,
    }
}

/// The normalized finish reason of a Converse `stopReason`.
pub(super) fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        other => other,
    }
    .to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Option<StartBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: Option<DeltaBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
    text: Option<String>,
    reasoning_content: Option<ReasoningDelta>,
    tool_use: Option<ToolUseDelta>,
}

#[derive(Deserialize)]
struct ReasoningDelta {
    text: Option<String>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    #[serde(default)]
    content_block_index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: String,
}

#[derive(Deserialize)]
struct Metadata {
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

/// A tool call whose input is still arriving.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    input: String,
}

/// Turns decoded messages into events.
#[derive(Default)]
pub(super) struct EventParser {
    /// Tool-use blocks being assembled, by content block index.
    calls: BTreeMap<u64, PartialCall>,
    /// The normalized reason of `messageStop`, until the metadata.
    stop: Option<String>,
    /// Set once `Finished` went out.
    pub(super) finished: bool,
}

impl EventParser {
    /// One message's events.
    pub(super) fn message(
        &mut self,
        message: &Message,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        let payload = message.payload();
        match header(message, ":message-type").unwrap_or("event") {
            "exception" => {
                let name = header(message, ":exception-type").unwrap_or("unknownException");
                let text = String::from_utf8_lossy(payload);
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("Message"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| truncate(&text, 300).to_string());
                Err(ProviderError::new(
                    exception_kind(name),
                    format!("{name}: {detail}"),
                ))
            }
            "error" => {
                let code = header(message, ":error-code").unwrap_or("error");
                let detail = header(message, ":error-message").unwrap_or_default();
                Err(ProviderError::new(
                    ProviderErrorKind::Upstream,
                    format!("{code}: {detail}"),
                ))
            }
            _ => {
                let kind = header(message, ":event-type").unwrap_or_default();
                self.event(kind, payload, out)
            }
        }
    }

    fn event(
        &mut self,
        kind: &str,
        payload: &[u8],
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        fn parse<'a, T: Deserialize<'a>>(
            kind: &str,
            payload: &'a [u8],
        ) -> Result<T, ProviderError> {
            serde_json::from_slice(payload).map_err(|e| {
                ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!(
                        "malformed {kind} event ({e}): {}",
                        truncate(&String::from_utf8_lossy(payload), 200)
                    ),
                )
            })
        }
        match kind {
            "contentBlockStart" => {
                let start: BlockStart = parse(kind, payload)?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    self.calls.insert(
                        start.content_block_index,
                        PartialCall {
                            id: tool.tool_use_id,
                            name: tool.name,
                            input: String::new(),
                        },
                    );
                }
            }
            "contentBlockDelta" => {
                let delta: BlockDelta = parse(kind, payload)?;
                let Some(body) = delta.delta else {
                    return Ok(());
                };
                if let Some(text) = body.text.filter(|t| !t.is_empty()) {
                    out.push_back(ProviderEvent::Text(text));
                }
                if let Some(text) = body
                    .reasoning_content
                    .and_then(|r| r.text)
                    .filter(|t| !t.is_empty())
                {
                    out.push_back(ProviderEvent::Reasoning(text));
                }
                if let Some(tool) = body.tool_use {
                    self.calls
                        .entry(delta.content_block_index)
                        .or_default()
                        .input
                        .push_str(&tool.input);
                }
            }
            "contentBlockStop" => {
                let stop: BlockStop = parse(kind, payload)?;
                if let Some(call) = self.calls.remove(&stop.content_block_index) {
                    out.push_back(complete_call(stop.content_block_index, call)?);
                }
            }
            "messageStop" => {
                let stop: MessageStop = parse(kind, payload)?;
                for (index, call) in std::mem::take(&mut self.calls) {
                    out.push_back(complete_call(index, call)?);
                }
                self.stop = Some(finish_reason(&stop.stop_reason));
            }
            "metadata" => {
                let meta: Metadata = parse(kind, payload)?;
                if let Some(u) = meta.usage {
                    out.push_back(ProviderEvent::Usage(Usage {
                        prompt_tokens: u.input_tokens
                            + u.cache_read_input_tokens
                            + u.cache_write_input_tokens,
                        completion_tokens: u.output_tokens,
                        cached_prompt_tokens: u.cache_read_input_tokens,
                        estimated: false,
                        ..Default::default()
                    }));
                }
                if let Some(reason) = self.stop.take() {
                    self.finished = true;
                    out.push_back(ProviderEvent::Finished(reason));
                }
            }
            // messageStart (the role) and event types added later carry nothing we use.
            _ => {}
        }
        Ok(())
    }

    /// The body ended: a stopped message without metadata still finishes; anything
    /// else was cut off.
    pub(super) fn end(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        if self.finished {
            return Ok(());
        }
        match self.stop.take() {
            Some(reason) => {
                self.finished = true;
                out.push_back(ProviderEvent::Finished(reason));
                Ok(())
            }
            None => Err(ProviderError::new(
                ProviderErrorKind::Connect,
                "the stream ended before messageStop",
            )),
        }
    }
}

fn complete_call(index: u64, call: PartialCall) -> Result<ProviderEvent, ProviderError> {
    if call.name.is_empty() {
        return Err(ProviderError::new(
            ProviderErrorKind::Protocol,
            format!("tool use block #{index} came without contentBlockStart"),
        ));
    }
    let arguments = if call.input.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&call.input) {
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(e) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!(
                        "the input of the call to tool `{}` is not valid JSON ({e}): {}",
                        call.name,
                        truncate(&call.input, 200)
                    ),
                ));
            }
        }
    };
    let id = if call.id.is_empty() {
        format!("tooluse_{}", uuid::Uuid::new_v4().simple())
    } else {
        call.id
    };
    Ok(ProviderEvent::ToolCall(ToolCall {
        id,
        name: call.name,
        arguments,
    }))
}
