//! Messages responses: the whole `message` object, and the named server-sent events
//! of a stream (`message_start`, `content_block_start`/`_delta`/`_stop`,
//! `message_delta`, `message_stop`). Chorus journals complete tool calls, so a
//! `tool_use` block streams its input as one `input_json_delta`.

use crate::reply::{Reply, ReplyEnd, ReplyToolCall, ReplyUsage};
use serde_json::{Value, json};

/// Anthropic's `stop_reason` for a run's end.
pub fn stop_reason(end: &ReplyEnd) -> &'static str {
    match end.reason.as_str() {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

pub fn usage(u: &ReplyUsage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_prompt_tokens),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_prompt_tokens,
        "cache_creation_input_tokens": 0,
    })
}

fn tool_use(call: &ReplyToolCall) -> Value {
    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
}

/// The non-streaming response.
pub fn message(id: &str, model: &str, reply: &Reply, end: &ReplyEnd) -> Value {
    let mut content = Vec::with_capacity(1 + reply.tool_calls.len());
    if !reply.text.is_empty() || reply.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": reply.text}));
    }
    content.extend(reply.tool_calls.iter().map(tool_use));
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(end),
        "stop_sequence": null,
        "usage": usage(&reply.usage),
    })
}

/// One named server-sent event.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The state of a stream's content blocks.
#[derive(Default)]
pub struct Blocks {
    /// Index of the next block.
    next: usize,
    /// A text block is open (deltas go to it).
    text_open: bool,
}

impl Blocks {
    /// A text delta, opening a text block first if none is open.
    pub fn text(&mut self, text: &str, out: &mut String) {
        if !self.text_open {
            out.push_str(&event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.next, "content_block": {"type": "text", "text": ""}}),
            ));
            self.text_open = true;
        }
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next, "delta": {"type": "text_delta", "text": text}}),
        ));
    }

    /// A whole `tool_use` block (start, its input as one delta, stop).
    pub fn tool_use(&mut self, call: &ReplyToolCall, out: &mut String) {
        self.close(out);
        let index = self.next;
        out.push_str(&event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
        ));
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": call.arguments.to_string()}}),
        ));
        out.push_str(&event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        self.next += 1;
    }

    /// Closes the open text block, if any.
    pub fn close(&mut self, out: &mut String) {
        if self.text_open {
            out.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next}),
            ));
            self.text_open = false;
            self.next += 1;
        }
    }
}

/// The opening `message_start` (usage is known at the end: `message_delta` has it).
pub fn message_start(id: &str, model: &str) -> String {
    event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}),
    )
}

/// `message_delta` with the stop reason and the whole usage, then `message_stop`.
pub fn message_end(end: &ReplyEnd, u: &ReplyUsage) -> String {
    let mut out = event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(end), "stop_sequence": null},
            "usage": usage(u)}),
    );
    out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_block_closes_before_a_tool_use_block() {
        let mut blocks = Blocks::default();
        let mut out = String::new();
        blocks.text("Let me look.", &mut out);
        blocks.tool_use(
            &ReplyToolCall {
                id: "tu1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"}),
            },
            &mut out,
        );
        blocks.close(&mut out);
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop"
            ]
        );
        assert!(out.contains("\"index\":1") && out.contains("input_json_delta"));
    }
}
