//! A Messages request as Anthropic's clients send it, translated into a
//! [`GatewayRequest`]: content blocks become messages (a user turn's `tool_result`
//! blocks become tool messages, an assistant's `tool_use` blocks its tool calls).

use crate::error::GatewayError;
use chorus_core::{GatewayRequest, ToolChoice};
use chorus_model::chat::{ChatMessage, ChatRole, ToolCall, ToolSpec};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// The body of `POST /v1/messages`. Unknown fields (`metadata`, `service_tier`...) are
/// ignored; known ones Chorus cannot honour are refused.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub system: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tools: Vec<WireTool>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    #[serde(default)]
    pub thinking: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: Value,
}

#[derive(Debug, Deserialize)]
pub struct WireTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Server tools (`web_search_...`) carry a type; client tools have none or `custom`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl MessagesRequest {
    pub fn into_gateway(self) -> Result<GatewayRequest, GatewayError> {
        if self.top_k.is_some() {
            return Err(GatewayError::invalid(
                "top_k",
                "top_k is not supported by Chorus's gateway: its providers are not all able to honour it",
            ));
        }
        if self.messages.is_empty() {
            return Err(GatewayError::invalid(
                "messages",
                "messages must hold at least one message",
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = self.system {
            let text = blocks_text(system, "system")?;
            if !text.is_empty() {
                messages.push(ChatMessage::text(ChatRole::System, text));
            }
        }
        let mut names: HashMap<String, String> = HashMap::new();
        for m in self.messages {
            convert(m, &mut names, &mut messages)?;
        }
        let tools = self
            .tools
            .into_iter()
            .map(|t| match t.kind.as_deref() {
                None | Some("custom") => Ok(ToolSpec {
                    name: t.name,
                    description: t.description.unwrap_or_default(),
                    parameters: t
                        .input_schema
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                }),
                Some(kind) => Err(GatewayError::invalid(
                    "tools",
                    format!(
                        "server tool {kind:?} is not available through Chorus; only client tools"
                    ),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.as_ref().map(tool_choice).transpose()?;
        Ok(GatewayRequest {
            model: self.model,
            messages,
            tools,
            tool_choice,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: Some(self.max_tokens),
            stop: self.stop_sequences,
            reasoning_effort: self.thinking.as_ref().and_then(effort),
            seed: None,
            response_format: None,
            whole_reply: !self.stream,
        })
    }
}

/// Extended thinking as a reasoning effort: its token budget, in thirds.
fn effort(thinking: &Value) -> Option<String> {
    if thinking.get("type").and_then(Value::as_str) != Some("enabled") {
        return None;
    }
    let budget = thinking
        .get("budget_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(
        match budget {
            0..4_096 => "low",
            4_096..16_384 => "medium",
            _ => "high",
        }
        .to_string(),
    )
}

/// One wire message as one or more chat messages.
fn convert(
    m: WireMessage,
    names: &mut HashMap<String, String>,
    out: &mut Vec<ChatMessage>,
) -> Result<(), GatewayError> {
    let role = match m.role.as_str() {
        "user" => ChatRole::User,
        "assistant" => ChatRole::Assistant,
        other => {
            return Err(GatewayError::invalid(
                "messages",
                format!("message role {other:?} must be user or assistant"),
            ));
        }
    };
    let blocks = match m.content {
        Value::String(s) => {
            out.push(ChatMessage::text(role, s));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(GatewayError::invalid(
                "messages",
                "message content must be a string or an array of content blocks",
            ));
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") if role == ChatRole::Assistant => {
                let id = str_field(&block, "id")?;
                let name = str_field(&block, "name")?;
                names.insert(id.clone(), name.clone());
                calls.push(ToolCall {
                    id,
                    name,
                    arguments: block
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({})),
                });
            }
            Some("tool_result") if role == ChatRole::User => {
                let id = str_field(&block, "tool_use_id")?;
                let content = match block.get("content").cloned() {
                    None | Some(Value::Null) => String::new(),
                    Some(c) => blocks_text(c, "messages")?,
                };
                out.push(ChatMessage {
                    role: ChatRole::Tool,
                    content,
                    tool_name: names.get(&id).cloned(),
                    tool_call_id: Some(id),
                    tool_calls: Vec::new(),
                    is_error: block
                        .get("is_error")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                });
            }
            // Earlier thinking is the model's own; providers do not need it back.
            Some("thinking" | "redacted_thinking") if role == ChatRole::Assistant => {}
            other => {
                return Err(GatewayError::invalid(
                    "messages",
                    format!(
                        "content block {:?} is not supported in a {} message by Chorus's gateway",
                        other.unwrap_or("(no type)"),
                        m.role
                    ),
                ));
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        out.push(ChatMessage {
            role,
            content: text,
            tool_calls: calls,
            ..Default::default()
        });
    }
    Ok(())
}

fn str_field(block: &Value, name: &'static str) -> Result<String, GatewayError> {
    block
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| GatewayError::invalid("messages", format!("a content block lacks `{name}`")))
}

/// The text of a string or of text blocks (a system prompt, a tool result).
fn blocks_text(v: Value, param: &'static str) -> Result<String, GatewayError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Array(blocks) => {
            let mut text = String::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            param,
                            format!(
                                "content block {:?} is not supported here by Chorus's gateway; only text",
                                other.unwrap_or("(no type)")
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(GatewayError::invalid(
            param,
            "expected a string or an array of text blocks",
        )),
    }
}

fn tool_choice(v: &Value) -> Result<ToolChoice, GatewayError> {
    match v.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(ToolChoice::Auto),
        Some("any") => Ok(ToolChoice::Required),
        Some("none") => Ok(ToolChoice::None),
        Some("tool") => v
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_string()))
            .ok_or_else(|| {
                GatewayError::invalid("tool_choice", "tool_choice `tool` needs a `name`")
            }),
        _ => Err(GatewayError::invalid(
            "tool_choice",
            "tool_choice type must be auto, any, tool or none",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_become_messages_with_tool_rounds() {
        let r: MessagesRequest = serde_json::from_value(json!({
            "model": "fake/claude", "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "tu1", "name": "get_weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "sunny"}]}
                ]}
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "thinking": {"type": "enabled", "budget_tokens": 5000}
        }))
        .unwrap();
        let g = r.into_gateway().unwrap();
        let roles: Vec<ChatRole> = g.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ChatRole::System,
                ChatRole::User,
                ChatRole::Assistant,
                ChatRole::Tool
            ]
        );
        assert_eq!(
            g.messages[2].tool_calls[0].arguments,
            json!({"city": "Oslo"})
        );
        assert_eq!(g.messages[3].tool_name.as_deref(), Some("get_weather"));
        assert_eq!(g.messages[3].content, "sunny");
        assert_eq!(g.tool_choice, Some(ToolChoice::Required));
        assert_eq!(g.max_output_tokens, Some(100));
        assert_eq!(g.reasoning_effort.as_deref(), Some("medium"));
    }

    #[test]
    fn refuses_images_and_top_k() {
        let image: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]
        }))
        .unwrap();
        assert_eq!(image.into_gateway().unwrap_err().param, Some("messages"));
        let top_k: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 5, "top_k": 3,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        assert_eq!(top_k.into_gateway().unwrap_err().param, Some("top_k"));
    }
}
