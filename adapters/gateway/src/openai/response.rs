//! Chat Completions responses: the whole `chat.completion` object, and the
//! `chat.completion.chunk`s of a stream, each serialized once from borrowed parts.

use crate::reply::{Reply, ReplyEnd, ReplyToolCall, ReplyUsage};
use serde::Serialize;
use serde_json::{Value, json};

/// What every chunk and the completion share.
pub struct Envelope<'a> {
    pub id: &'a str,
    pub created: i64,
    pub model: &'a str,
}

/// OpenAI's `usage` object.
pub fn usage(u: &ReplyUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// The `finish_reason` of a run's end.
pub fn finish_reason(end: &ReplyEnd) -> &str {
    match end.reason.as_str() {
        r @ ("stop" | "length" | "tool_calls" | "content_filter") => r,
        _ => "stop",
    }
}

fn tool_call_json(index: usize, call: &ReplyToolCall) -> Value {
    json!({
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_text(&call.arguments)},
    })
}

/// Arguments as OpenAI sends them: JSON text.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The non-streaming response.
pub fn completion(env: &Envelope<'_>, reply: &Reply, end: &ReplyEnd) -> Value {
    let tool_calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = tool_call_json(i, c);
            if let Some(o) = v.as_object_mut() {
                o.remove("index");
            }
            v
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if reply.text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(reply.text.clone()) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !reply.reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reply.reasoning.clone());
    }
    json!({
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(end),
        }],
        "usage": usage(&reply.usage),
    })
}

#[derive(Serialize)]
struct Chunk<'a, D: Serialize> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [ChunkChoice<D>; 1],
    /// `null` on every chunk when the client asked for usage (the last one has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

#[derive(Serialize)]
struct ChunkChoice<D: Serialize> {
    index: u32,
    delta: D,
    finish_reason: Option<String>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

/// Builds the `data:` lines of one stream.
pub struct ChunkWriter<'a> {
    pub env: Envelope<'a>,
    /// Every chunk carries `"usage": null` and a last chunk has the usage.
    pub include_usage: bool,
}

impl ChunkWriter<'_> {
    fn line<D: Serialize>(&self, delta: D, finish_reason: Option<String>) -> String {
        let chunk = Chunk {
            id: self.env.id,
            object: "chat.completion.chunk",
            created: self.env.created,
            model: self.env.model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: self.include_usage.then_some(Value::Null),
        };
        sse_data(&serde_json::to_string(&chunk).unwrap_or_default())
    }

    /// The first chunk: the assistant's role.
    pub fn role(&self) -> String {
        self.line(
            TextDelta {
                role: Some("assistant"),
                content: Some(""),
                reasoning_content: None,
            },
            None,
        )
    }

    pub fn text(&self, text: &str) -> String {
        self.line(
            TextDelta {
                role: None,
                content: Some(text),
                reasoning_content: None,
            },
            None,
        )
    }

    pub fn reasoning(&self, text: &str) -> String {
        self.line(
            TextDelta {
                role: None,
                content: None,
                reasoning_content: Some(text),
            },
            None,
        )
    }

    /// A whole tool call in one chunk (Chorus journals complete calls).
    pub fn tool_call(&self, index: usize, call: &ReplyToolCall) -> String {
        self.line(json!({"tool_calls": [tool_call_json(index, call)]}), None)
    }

    pub fn finish(&self, end: &ReplyEnd) -> String {
        self.line(json!({}), Some(finish_reason(end).to_string()))
    }

    /// The usage chunk: no choices.
    pub fn usage(&self, u: &ReplyUsage) -> String {
        let chunk = json!({
            "id": self.env.id,
            "object": "chat.completion.chunk",
            "created": self.env.created,
            "model": self.env.model,
            "choices": [],
            "usage": usage(u),
        });
        sse_data(&chunk.to_string())
    }
}

/// One server-sent event carrying `data`.
pub fn sse_data(data: &str) -> String {
    let mut s = String::with_capacity(data.len() + 8);
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    s
}

/// The stream's terminator.
pub const DONE: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(include_usage: bool) -> ChunkWriter<'static> {
        ChunkWriter {
            env: Envelope {
                id: "chatcmpl-1",
                created: 7,
                model: "fake/gpt",
            },
            include_usage,
        }
    }

    fn data(line: &str) -> Value {
        serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap()
    }

    #[test]
    fn chunks_follow_openai_shapes() {
        let w = writer(true);
        let role = data(&w.role());
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role["usage"].is_null() && role.as_object().unwrap().contains_key("usage"));
        let text = data(&w.text("hé"));
        assert_eq!(text["choices"][0]["delta"]["content"], "hé");
        assert_eq!(text["object"], "chat.completion.chunk");
        let call = data(&w.tool_call(
            0,
            &ReplyToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: json!({"a": 1}),
            },
        ));
        assert_eq!(
            call["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        let u = data(&w.usage(&ReplyUsage {
            prompt_tokens: 3,
            completion_tokens: 4,
            ..Default::default()
        }));
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["total_tokens"], 7);
        let plain = data(&writer(false).text("x"));
        assert!(!plain.as_object().unwrap().contains_key("usage"));
    }
}
