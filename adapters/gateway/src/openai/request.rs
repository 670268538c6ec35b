//! A Chat Completions request as OpenAI's clients send it, translated into a
//! [`GatewayRequest`]. Every parameter Chorus passes on is mapped; one that a Chorus
//! run cannot honour is refused with a 400 naming it, never silently dropped.

use crate::error::GatewayError;
use chorus_core::{GatewayRequest, ToolChoice};
use chorus_model::chat::{ChatMessage, ChatRole, ToolCall, ToolSpec};
use serde::Deserialize;
use serde_json::Value;

/// The body of `POST /v1/chat/completions`. Fields Chorus does not know are ignored
/// (clients send `user`, `metadata`, `store`...); known ones it cannot honour are
/// refused in [`ChatCompletionRequest::into_gateway`].
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub tools: Vec<WireTool>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub logprobs: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub tool_calls: Vec<WireToolCall>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WireToolCall {
    pub id: String,
    #[serde(default)]
    pub function: Option<WireFunctionCall>,
}

#[derive(Debug, Deserialize)]
pub struct WireFunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
pub struct WireFunction {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

impl ChatCompletionRequest {
    /// Whether the stream ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// The request as a Chorus run asks it, or the 400 naming what cannot be done.
    pub fn into_gateway(self) -> Result<GatewayRequest, GatewayError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(GatewayError::invalid(
                "n",
                "n must be 1: a Chorus run generates one choice",
            ));
        }
        if self.logprobs == Some(true) {
            return Err(GatewayError::invalid(
                "logprobs",
                "logprobs are not available through Chorus",
            ));
        }
        // `text` is every model's default; a structured format goes to the provider
        // (core refuses it for a model whose provider cannot honour it, like `seed`).
        let response_format = match self.response_format {
            None => None,
            Some(format) => match format.get("type").and_then(Value::as_str) {
                Some("text") => None,
                Some("json_object" | "json_schema") => Some(format),
                other => {
                    return Err(GatewayError::invalid(
                        "response_format",
                        format!(
                            "response_format type {:?} must be text, json_object or json_schema",
                            other.unwrap_or("(none)")
                        ),
                    ));
                }
            },
        };
        if let Some(effort) = &self.reasoning_effort
            && !matches!(effort.as_str(), "low" | "medium" | "high")
        {
            return Err(GatewayError::invalid(
                "reasoning_effort",
                format!("reasoning_effort must be low, medium or high, not {effort:?}"),
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(GatewayError::invalid(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(GatewayError::invalid(
                "top_p",
                "top_p must be between 0 and 1",
            ));
        }
        if self.messages.is_empty() {
            return Err(GatewayError::invalid(
                "messages",
                "messages must hold at least one message",
            ));
        }
        let messages = self
            .messages
            .into_iter()
            .map(message)
            .collect::<Result<Vec<_>, _>>()?;
        let tools = self
            .tools
            .into_iter()
            .map(tool)
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.as_ref().map(tool_choice).transpose()?;
        Ok(GatewayRequest {
            model: self.model,
            messages,
            tools,
            tool_choice,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop: stop(self.stop)?,
            reasoning_effort: self.reasoning_effort,
            seed: self.seed,
            response_format,
            whole_reply: !self.stream,
        })
    }
}

fn message(m: WireMessage) -> Result<ChatMessage, GatewayError> {
    let role = match m.role.as_str() {
        "system" | "developer" => ChatRole::System,
        "user" => ChatRole::User,
        "assistant" => ChatRole::Assistant,
        "tool" => ChatRole::Tool,
        other => {
            return Err(GatewayError::invalid(
                "messages",
                format!(
                    "message role {other:?} is not supported: expected system, developer, user, assistant or tool"
                ),
            ));
        }
    };
    let content = text_content(m.content)?;
    let tool_calls = m
        .tool_calls
        .into_iter()
        .map(|call| {
            let function = call.function.ok_or_else(|| {
                GatewayError::invalid("messages", "a tool call must carry its `function`")
            })?;
            Ok(ToolCall {
                id: call.id,
                name: function.name,
                arguments: arguments(&function.arguments),
            })
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    if role == ChatRole::Tool && m.tool_call_id.is_none() {
        return Err(GatewayError::invalid(
            "messages",
            "a `tool` message must name the call it answers in `tool_call_id`",
        ));
    }
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id: m.tool_call_id,
        tool_name: None,
        is_error: false,
    })
}

/// The arguments of a replayed call: the JSON object they encode (`{}` for none);
/// text that is not JSON is kept as a string for the provider to pass on.
fn arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// A message's text: a string, or text parts joined; other parts are refused.
fn text_content(content: Option<Value>) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            "messages",
                            format!(
                                "content part {:?} is not supported by Chorus's gateway; only text",
                                other.unwrap_or("(no type)")
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(GatewayError::invalid(
            "messages",
            "message content must be a string or an array of text parts",
        )),
    }
}

fn tool(t: WireTool) -> Result<ToolSpec, GatewayError> {
    let function = match (t.kind.as_str(), t.function) {
        ("function", Some(f)) => f,
        (kind, _) => {
            return Err(GatewayError::invalid(
                "tools",
                format!(
                    "tool type {kind:?} is not supported: expected \"function\" with a `function`"
                ),
            ));
        }
    };
    let valid = !function.name.is_empty()
        && function.name.len() <= 64
        && function
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(GatewayError::invalid(
            "tools",
            format!(
                "tool name {:?} must be 1-64 letters, digits, `_` or `-`",
                function.name
            ),
        ));
    }
    Ok(ToolSpec {
        name: function.name,
        description: function.description.unwrap_or_default(),
        parameters: function
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

fn tool_choice(v: &Value) -> Result<ToolChoice, GatewayError> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(GatewayError::invalid(
                "tool_choice",
                format!("tool_choice {other:?} must be auto, none, required or a function"),
            )),
        },
        _ => v
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Tool(name.to_string()))
            .ok_or_else(|| {
                GatewayError::invalid(
                    "tool_choice",
                    "tool_choice must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )
            }),
    }
}

fn stop(v: Option<Value>) -> Result<Vec<String>, GatewayError> {
    let stops: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(GatewayError::invalid("stop", "stop must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(GatewayError::invalid(
                "stop",
                "stop must be a string or an array of strings",
            ));
        }
    };
    if stops.len() > 4 {
        return Err(GatewayError::invalid(
            "stop",
            "stop takes at most 4 sequences",
        ));
    }
    Ok(stops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<GatewayRequest, GatewayError> {
        serde_json::from_value::<ChatCompletionRequest>(v)
            .unwrap()
            .into_gateway()
    }

    #[test]
    fn maps_messages_tools_and_parameters() {
        let r = parse(json!({
            "model": "fake/gpt",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 5, "max_completion_tokens": 7, "stop": "END", "temperature": 0.5
        }))
        .unwrap();
        assert_eq!(r.messages[0].role, ChatRole::System);
        assert_eq!(r.messages[1].content, "weather?");
        assert_eq!(
            r.messages[2].tool_calls[0].arguments,
            json!({"city": "Oslo"})
        );
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(r.tools[0].name, "get_weather");
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("get_weather".into())));
        assert_eq!(r.max_output_tokens, Some(7));
        assert_eq!(r.stop, vec!["END".to_string()]);
        assert_eq!((r.seed, r.response_format), (None, None));
    }

    #[test]
    fn seed_and_structured_formats_are_passed_on() {
        let r = parse(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "seed": 7, "response_format": {"type": "json_object"}
        }))
        .unwrap();
        assert_eq!(r.seed, Some(7));
        assert_eq!(r.response_format, Some(json!({"type": "json_object"})));
        let text = parse(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "text"}
        }))
        .unwrap();
        assert_eq!(text.response_format, None);
    }

    #[test]
    fn refuses_what_a_run_cannot_do_naming_the_parameter() {
        let base = |extra: Value| {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            parse(v).unwrap_err().param
        };
        assert_eq!(base(json!({"n": 2})), Some("n"));
        assert_eq!(
            base(json!({"response_format": {"type": "yaml"}})),
            Some("response_format")
        );
        assert_eq!(
            base(json!({"stop": ["a", "b", "c", "d", "e"]})),
            Some("stop")
        );
        assert_eq!(
            base(json!({"reasoning_effort": "max"})),
            Some("reasoning_effort")
        );
        assert_eq!(
            base(json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})),
            Some("messages")
        );
    }
}
