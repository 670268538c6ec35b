//! The tool calls of an assistant message, as stored and as replayed to a model.
//!
//! A message's text is what people read; the tool calls and results between its parts
//! are kept beside it as [`ToolStep`]s, each at the byte offset of the text where the
//! model made the calls. From text and steps the history a provider needs is rebuilt:
//! assistant text with its calls, the tool results, the next text, and so on. This is
//! pure code; the engine and the store only carry it.

use crate::chat::{ChatMessage, ChatRole, ToolCall};
use serde::{Deserialize, Serialize};

/// One round of tool calls: what the model asked for at `at`, and what came back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolStep {
    /// Byte offset into the text (of the run while it runs, of the message once
    /// merged) where the calls were made.
    pub at: usize,
    /// The calls, in the model's order. Empty in a continuation's first step, whose
    /// results answer the calls the previous step left pending.
    pub calls: Vec<StepCall>,
    pub results: Vec<StepResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub call_id: String,
    pub name: String,
    pub output: String,
    pub is_error: bool,
    #[serde(default)]
    pub truncated: bool,
}

impl From<&ToolCall> for StepCall {
    fn from(c: &ToolCall) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        }
    }
}

impl StepCall {
    pub fn to_call(&self) -> ToolCall {
        ToolCall {
            id: self.id.clone(),
            name: self.name.clone(),
            arguments: self.arguments.clone(),
        }
    }
}

/// Joins the steps of a message's runs, each given with the message text length
/// before it (`prefix_len`), into the message's steps. A step without calls adds its
/// results to the step before it (a continuation answering pending calls).
pub fn merge_runs(runs: impl IntoIterator<Item = (usize, Vec<ToolStep>)>) -> Vec<ToolStep> {
    let mut merged: Vec<ToolStep> = Vec::new();
    for (prefix_len, steps) in runs {
        for mut step in steps {
            step.at += prefix_len;
            match merged.last_mut() {
                Some(last) if step.calls.is_empty() => last.results.extend(step.results),
                _ if step.calls.is_empty() => {}
                _ => merged.push(step),
            }
        }
    }
    merged
}

/// What a message's text and steps replay as.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    /// Assistant turns with their calls, and the tool results, up to the last step.
    pub messages: Vec<ChatMessage>,
    /// The text after the last step (all of it when there are no steps).
    pub tail: String,
    /// Calls of the last step that have no result and no text after them: a run was
    /// interrupted while they ran; a continuation runs them.
    pub pending: Vec<ToolCall>,
}

/// Rebuilds the provider history of an assistant message.
pub fn replay(content: &str, steps: &[ToolStep]) -> Replayed {
    let mut out = Replayed::default();
    let mut from = 0usize;
    for (i, step) in steps.iter().enumerate() {
        let at = clamp_to_boundary(content, step.at.max(from));
        out.messages.push(ChatMessage {
            role: ChatRole::Assistant,
            content: content[from..at].to_string(),
            tool_calls: step.calls.iter().map(StepCall::to_call).collect(),
            ..Default::default()
        });
        let last = i + 1 == steps.len();
        let nothing_after = content.len() == at;
        for call in &step.calls {
            match step.results.iter().find(|r| r.call_id == call.id) {
                Some(r) => out
                    .messages
                    .push(tool_message(&r.call_id, &r.name, &r.output, r.is_error)),
                None if last && nothing_after => out.pending.push(call.to_call()),
                None => out.messages.push(tool_message(
                    &call.id,
                    &call.name,
                    "no result: the run ended before this call returned",
                    true,
                )),
            }
        }
        from = at;
    }
    out.tail = content[from..].to_string();
    out
}

/// The messages a finished assistant message adds to a later request's history:
/// pending calls are answered as interrupted, so the history stays well formed.
pub fn history_messages(content: &str, steps: &[ToolStep]) -> Vec<ChatMessage> {
    let mut r = replay(content, steps);
    for call in r.pending.drain(..) {
        r.messages.push(tool_message(
            &call.id,
            &call.name,
            "no result: the run ended before this call returned",
            true,
        ));
    }
    if !r.tail.is_empty() {
        r.messages
            .push(ChatMessage::text(ChatRole::Assistant, r.tail.clone()));
    }
    r.messages
}

pub fn tool_message(call_id: &str, name: &str, output: &str, is_error: bool) -> ChatMessage {
    ChatMessage {
        role: ChatRole::Tool,
        content: output.to_string(),
        tool_call_id: Some(call_id.to_string()),
        tool_name: Some(name.to_string()),
        is_error,
        ..Default::default()
    }
}

fn clamp_to_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> StepCall {
        StepCall {
            id: id.into(),
            name: "srv__echo".into(),
            arguments: serde_json::json!({"message": id}),
        }
    }

    fn result(id: &str) -> StepResult {
        StepResult {
            call_id: id.into(),
            name: "srv__echo".into(),
            output: format!("out {id}"),
            is_error: false,
            truncated: false,
        }
    }

    #[test]
    fn text_calls_results_and_tail_replay_in_order() {
        let steps = vec![ToolStep {
            at: 6,
            calls: vec![call("a"), call("b")],
            results: vec![result("b"), result("a")],
        }];
        let r = replay("Let's see. Done.", &steps);
        let roles: Vec<_> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [ChatRole::Assistant, ChatRole::Tool, ChatRole::Tool]);
        assert_eq!(r.messages[0].content, "Let's ");
        assert_eq!(r.messages[0].tool_calls.len(), 2);
        assert_eq!(r.messages[1].tool_call_id.as_deref(), Some("a"));
        assert_eq!(r.tail, "see. Done.");
        assert!(r.pending.is_empty());
    }

    #[test]
    fn calls_without_results_are_pending_only_at_the_end() {
        let steps = vec![ToolStep {
            at: 3,
            calls: vec![call("a")],
            results: vec![],
        }];
        let r = replay("abc", &steps);
        assert_eq!(r.pending.len(), 1);
        assert_eq!(r.tail, "");
        let h = history_messages("abc", &steps);
        assert_eq!(h.len(), 2);
        assert!(h[1].is_error && h[1].role == ChatRole::Tool);

        let r = replay("abcdef", &steps);
        assert!(r.pending.is_empty(), "text after the calls: they are over");
        assert!(r.messages[1].is_error);
    }

    #[test]
    fn a_continuation_answers_the_pending_calls_of_the_run_before() {
        let first = vec![ToolStep {
            at: 4,
            calls: vec![call("a")],
            results: vec![],
        }];
        let second = vec![
            ToolStep {
                at: 0,
                calls: vec![],
                results: vec![result("a")],
            },
            ToolStep {
                at: 2,
                calls: vec![call("c")],
                results: vec![result("c")],
            },
        ];
        let merged = merge_runs([(0, first), (4, second)]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].results.len(), 1);
        assert_eq!(merged[1].at, 6);
        let r = replay("abcdefgh", &merged);
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[2].content, "ef");
        assert_eq!(r.tail, "gh");
    }

    #[test]
    fn steps_round_trip_as_json() {
        let steps = vec![ToolStep {
            at: 1,
            calls: vec![call("a")],
            results: vec![result("a")],
        }];
        let json = serde_json::to_string(&steps).unwrap();
        assert_eq!(serde_json::from_str::<Vec<ToolStep>>(&json).unwrap(), steps);
    }
}
