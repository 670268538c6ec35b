//! Token counts for providers that report no usage: exact for OpenAI-family models
//! (their own BPE tokenizers, `tiktoken-rs`), about four characters a token for others.

use super::{ChatMessage, ChatRequest, Usage};
use crate::config::ProviderKind;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a BPE tokenizer has been loaded (its first use parses its vocabulary,
/// tens of milliseconds): until then no count is [`prompt_is_quick`].
static BPE_LOADED: AtomicBool = AtomicBool::new(false);

/// Tokens OpenAI's chat format adds per message (role and separators), as its
/// cookbook counts them, and once for the reply's priming.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// Counts `text` the way `model` of a provider of `kind` would.
pub fn count_tokens(kind: ProviderKind, model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiResponses => {
            // Unknown names (deployments, compatible servers) get the current encoding.
            let bpe = tiktoken_rs::bpe_for_model(model)
                .unwrap_or_else(|_| tiktoken_rs::o200k_base_singleton());
            let n = bpe.encode_ordinary(text).len() as u64;
            BPE_LOADED.store(true, Ordering::Relaxed);
            n
        }
        _ => super::estimate_tokens(text),
    }
}

/// Longest prompt (bytes of message text and prefill, no tools offered, no tool
/// calls) whose count [`prompt_is_quick`] calls cheap enough to run on an async
/// worker. A BPE tokenizer encodes roughly 1–5 MB/s of prose, so 1 KiB costs at most
/// a few hundred microseconds and usually tens — about what handing the request to
/// the blocking pool and back costs (a thread wake-up each way, and a copy of the
/// request), and within tokio's budget for work between two awaits.
pub const QUICK_PROMPT_BYTES: usize = 1024;

/// Whether counting `request`'s prompt for a provider of `kind` is cheap enough to do
/// inline: always for the providers counted at four characters a token, and for a BPE
/// tokenizer when the prompt is short ([`QUICK_PROMPT_BYTES`]) and a tokenizer has
/// been loaded already (another model's first count may still load its own, once).
pub fn prompt_is_quick(kind: ProviderKind, request: &ChatRequest) -> bool {
    if !matches!(
        kind,
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiResponses
    ) {
        return true;
    }
    if !BPE_LOADED.load(Ordering::Relaxed) || !request.tools.is_empty() {
        return false;
    }
    let mut bytes = request.prefill.as_ref().map_or(0, String::len);
    for m in &request.messages {
        if !m.tool_calls.is_empty() {
            return false;
        }
        bytes += m.content.len();
        if bytes > QUICK_PROMPT_BYTES {
            return false;
        }
    }
    bytes <= QUICK_PROMPT_BYTES
}

/// The usage of a generation whose provider reported none: the prompt as the model
/// saw it, and the text it produced. Marked `estimated`.
pub fn estimate_usage(kind: ProviderKind, request: &ChatRequest, completion: &str) -> Usage {
    let message_tokens = |m: &ChatMessage| {
        let calls: String = m
            .tool_calls
            .iter()
            .map(|c| format!("{}{}", c.name, c.arguments))
            .collect();
        PER_MESSAGE
            + count_tokens(kind, &request.model, &m.content)
            + count_tokens(kind, &request.model, &calls)
    };
    let mut prompt: u64 = request.messages.iter().map(message_tokens).sum::<u64>() + REPLY_PRIMING;
    if let Some(prefill) = &request.prefill {
        prompt += PER_MESSAGE + count_tokens(kind, &request.model, prefill);
    }
    // Offered tools reach the model as text too (their names, descriptions, schemas).
    let tools: String = request
        .tools
        .iter()
        .map(|t| format!("{}{}{}", t.name, t.description, t.parameters))
        .collect();
    prompt += count_tokens(kind, &request.model, &tools);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: count_tokens(kind, &request.model, completion),
        estimated: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatRole;

    #[test]
    fn only_short_plain_prompts_are_counted_inline() {
        let short = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![ChatMessage::text(ChatRole::User, "What is the weather?")],
            ..Default::default()
        };
        // Counted at four characters a token: always quick.
        assert!(prompt_is_quick(ProviderKind::Anthropic, &short));
        // Loads the tokenizer, after which a short prompt is quick.
        count_tokens(ProviderKind::Openai, "gpt-4o", "Hello");
        assert!(prompt_is_quick(ProviderKind::Openai, &short));
        let mut long = short.clone();
        long.messages.push(ChatMessage::text(
            ChatRole::User,
            "word ".repeat(QUICK_PROMPT_BYTES / 5 + 1),
        ));
        assert!(!prompt_is_quick(ProviderKind::Openai, &long));
        let mut tools = short.clone();
        tools.tools.push(crate::ToolSpec {
            name: "t".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
        });
        assert!(!prompt_is_quick(ProviderKind::Openai, &tools));
    }

    #[test]
    fn offered_tools_count_as_prompt() {
        let mut request = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![ChatMessage::text(ChatRole::User, "What is the weather?")],
            ..Default::default()
        };
        let without = estimate_usage(ProviderKind::Openai, &request, "").prompt_tokens;
        request.tools.push(crate::ToolSpec {
            name: "weather__forecast".into(),
            description: "The forecast for a city, by day, for the next week.".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"]
            }),
        });
        let with = estimate_usage(ProviderKind::Openai, &request, "").prompt_tokens;
        assert!(
            with > without + 20,
            "{without} tokens without tools, {with} with"
        );
    }

    #[test]
    fn openai_models_use_their_tokenizer() {
        // "Hello, world!" is 4 tokens in both cl100k_base and o200k_base.
        assert_eq!(
            count_tokens(ProviderKind::Openai, "gpt-4o-mini", "Hello, world!"),
            4
        );
        assert_eq!(
            count_tokens(ProviderKind::Azure, "my-deployment", "Hello, world!"),
            4
        );
        assert_eq!(
            count_tokens(ProviderKind::Openai, "gpt-4", "Hello, world!"),
            4
        );
        assert_eq!(count_tokens(ProviderKind::Openai, "gpt-4o", ""), 0);
        // Others: about four characters a token.
        assert_eq!(
            count_tokens(ProviderKind::Anthropic, "claude", "12345678"),
            2
        );
    }

    #[test]
    fn estimates_count_every_message_and_the_reply() {
        let request = ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                ChatMessage::text(ChatRole::System, "Be brief."),
                ChatMessage::text(ChatRole::User, "Hello, world!"),
            ],
            ..Default::default()
        };
        let usage = estimate_usage(ProviderKind::Openai, &request, "Hello, world!");
        let system = count_tokens(ProviderKind::Openai, "gpt-4o-mini", "Be brief.");
        assert_eq!(
            usage.prompt_tokens,
            system + 4 + 2 * PER_MESSAGE + REPLY_PRIMING
        );
        assert_eq!(usage.completion_tokens, 4);
        assert!(usage.estimated);
    }
}
