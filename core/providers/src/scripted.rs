//! A deterministic local provider: replies with a fixed text at a fixed pace.
//!
//! It makes a fresh install usable with no API key, and gives tests and benchmarks a
//! model whose every token is known in advance. Continuation is exact: given the
//! partial text of an earlier run, it streams only the rest of its script.
//!
//! A script can also call tools, to demo and test the tool loop: lines at its start of
//! the form `@call TOOL {JSON arguments}` are tool calls (several lines: parallel
//! calls), made when the request offers tools and no tool result has come yet. Once
//! results have come, the rest of the script is the reply, with `{{tool_results}}`
//! replaced by the results' text.

use super::{
    ChatRequest, Provider, ProviderError, ProviderEvent, ProviderStream, Usage, estimate_tokens,
};
use crate::config::ProviderConfig;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The demo reply: a few hundred tokens of markdown exercising what a client renders.
pub const DEFAULT_SCRIPT: &str = "## Hello from Chorus\n\n\
This reply comes from the **scripted demo provider**: it is not a real model. \
Configure a provider such as OpenAI in `chorus.toml` to talk to one.\n\n\
While you read this, try what Chorus is built for:\n\n\
1. *Close this tab* in the middle of the reply, then open it again. The reply \
keeps going on the server and picks up exactly where your screen left it.\n\
2. Press **Stop**, then **Continue**: the same message goes on from its partial text.\n\
3. Reload the page: nothing is lost, because every event of a run is kept in its journal.\n\n\
### A code block\n\n\
```rust\n\
fn main() {\n    \
let surfaces = [\"web\", \"discord\", \"slack\", \"matrix\"];\n    \
for s in surfaces {\n        \
println!(\"one reply, continued on {s}\");\n    \
}\n\
}\n\
```\n\n\
### A table of what a run goes through\n\n\
| status | meaning |\n\
|---|---|\n\
| queued | accepted, waiting for the provider |\n\
| streaming | tokens are arriving |\n\
| complete | the model finished |\n\
| stopped | someone pressed stop |\n\
| interrupted | the server died mid-reply; continue it later |\n\n\
> Replies belong to the server, not to the connection that asked for them.\n\n\
That is all for this demo. Thank you for trying Chorus!";

/// With the `test-util` feature only: the stream panics where its script has this
/// word, so tests can provoke a panic inside a run's task through the real engine.
#[cfg(feature = "test-util")]
pub const PANIC_TOKEN: &str = "@panic";

pub struct ScriptedProvider {
    script: Arc<str>,
    interval: Duration,
}

impl ScriptedProvider {
    pub fn new(script: &str, tokens_per_second: f64) -> Self {
        Self {
            script: script.into(),
            interval: Duration::from_secs_f64(1.0 / tokens_per_second.max(0.001)),
        }
    }

    pub fn from_config(cfg: &ProviderConfig) -> Self {
        Self::new(
            cfg.text.as_deref().unwrap_or(DEFAULT_SCRIPT),
            cfg.tokens_per_second.unwrap_or(25.0),
        )
    }
}

/// Splits text into word-sized tokens, each word with the whitespace after it, so the
/// tokens concatenate back to the exact text.
pub(crate) fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for ch in text.chars() {
        let space = ch.is_whitespace();
        if !space && in_space && !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        in_space = space;
        current.push(ch);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// The `@call` lines at the start of a script, and the reply after them.
fn split_calls(script: &str) -> (Vec<(String, serde_json::Value)>, &str) {
    let mut calls = Vec::new();
    let mut rest = script;
    while let Some(line) = rest.strip_prefix("@call ") {
        let (line, after) = line.split_once('\n').unwrap_or((line, ""));
        let (name, args) = line.trim().split_once(' ').unwrap_or((line.trim(), "{}"));
        let args = serde_json::from_str(args).unwrap_or(serde_json::json!({}));
        calls.push((name.to_string(), args));
        rest = after;
    }
    (calls, rest)
}

#[async_trait::async_trait]
impl Provider for ScriptedProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let (calls, reply) = split_calls(&self.script);
        let results: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == super::ChatRole::Tool)
            .map(|m| m.content.as_str())
            .collect();
        if !calls.is_empty() && !request.tools.is_empty() && results.is_empty() {
            let events = calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    Ok(ProviderEvent::ToolCall(super::ToolCall {
                        id: format!("call_{}", i + 1),
                        name,
                        arguments,
                    }))
                })
                .chain([Ok(ProviderEvent::Finished("tool_calls".into()))]);
            return Ok(futures::stream::iter(events.collect::<Vec<_>>()).boxed());
        }
        let script = reply.replace("{{tool_results}}", &results.join("\n"));
        let remaining = match request.prefill.as_deref() {
            Some(done) if script.starts_with(done) => &script[done.len()..],
            _ => &script[..],
        };
        let tokens = tokenize(remaining);
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let completion_tokens = tokens.len() as u64;
        // A fixed schedule (token k at start + k * interval) rather than a sleep per
        // token, so the pace does not drift and the benchmark can measure lag against it.
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
            tokio::time::Instant::now() + self.interval,
            self.interval,
        ));
        let text_events = ticks.zip(futures::stream::iter(tokens)).map(|(_, token)| {
            #[cfg(feature = "test-util")]
            if token.trim_end() == PANIC_TOKEN {
                panic!("scripted provider: the script reached `{PANIC_TOKEN}`");
            }
            Ok(ProviderEvent::Text(token))
        });
        let tail = futures::stream::iter([
            Ok(ProviderEvent::Usage(Usage {
                prompt_tokens,
                completion_tokens,
                estimated: true,
                ..Default::default()
            })),
            Ok(ProviderEvent::Finished("stop".into())),
        ]);
        Ok(text_events.chain(tail).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(p: &ScriptedProvider, prefill: Option<&str>) -> (String, Vec<ProviderEvent>) {
        let req = ChatRequest {
            model: "demo".into(),
            prefill: prefill.map(str::to_string),
            ..Default::default()
        };
        let events: Vec<_> = p
            .stream(req)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text = events
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        (text, events)
    }

    #[test]
    fn tokens_concatenate_to_the_text() {
        for text in [
            DEFAULT_SCRIPT,
            "",
            "one",
            "  lead and trail  ",
            "multi\n\nline ünïcode ✓",
        ] {
            assert_eq!(tokenize(text).concat(), text);
        }
        assert!(tokenize(DEFAULT_SCRIPT).len() > 150);
    }

    #[tokio::test]
    async fn streams_the_script_then_usage_and_finish() {
        let p = ScriptedProvider::new("alpha beta gamma", 1000.0);
        let (text, events) = collect(&p, None).await;
        assert_eq!(text, "alpha beta gamma");
        assert_eq!(events.last(), Some(&ProviderEvent::Finished("stop".into())));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ProviderEvent::Usage(u) if u.completion_tokens == 3))
        );
    }

    #[tokio::test]
    async fn a_script_calls_tools_then_answers_with_their_results() {
        let p = ScriptedProvider::new(
            "@call srv__echo {\"message\": \"hi\"}\n@call srv__add {\"a\": 1}\nGot: {{tool_results}}",
            1000.0,
        );
        let mut req = ChatRequest {
            tools: vec![super::super::ToolSpec {
                name: "srv__echo".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            ..Default::default()
        };
        let events: Vec<_> = p
            .stream(req.clone())
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(events.len(), 3);
        assert!(
            matches!(&events[0], ProviderEvent::ToolCall(c) if c.name == "srv__echo" && c.arguments["message"] == "hi")
        );
        assert_eq!(events[2], ProviderEvent::Finished("tool_calls".into()));
        req.messages.push(chorus_model::history::tool_message(
            "call_1",
            "srv__echo",
            "Echo: hi",
            false,
        ));
        let (text, _) = collect_req(&p, req).await;
        assert_eq!(text, "Got: Echo: hi");
        // Without tools offered, the calls are skipped.
        let (text, _) = collect(&p, None).await;
        assert_eq!(text, "Got: ");
    }

    async fn collect_req(p: &ScriptedProvider, req: ChatRequest) -> (String, Vec<ProviderEvent>) {
        let events: Vec<_> = p
            .stream(req)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text = events
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        (text, events)
    }

    #[tokio::test]
    async fn continuation_streams_only_the_rest() {
        let p = ScriptedProvider::new("alpha beta gamma", 1000.0);
        let (text, _) = collect(&p, Some("alpha be")).await;
        assert_eq!(text, "ta gamma");
    }
}
