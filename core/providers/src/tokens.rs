//! Token counts for providers that report no usage: exact for OpenAI-family models
//! (their own BPE tokenizers, `tiktoken-rs`), about four characters a token for others.

use super::{ChatMessage, ChatRequest, Usage};
use crate::config::ProviderKind;

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
            // Only the two encodings of OpenAI's chat models are linked in: cl100k for
            // the GPT-4 and GPT-3.5 generation, o200k for every later one (gpt-oss's
            // harmony encoding has o200k's vocabulary). The completion-only encodings
            // (p50k, r50k: davinci, GPT-2) would add 1.7 MB of vocabulary to the binary
            // for models no chat API serves. Unknown names (deployments, compatible
            // servers) get the current encoding.
            let bpe = match tiktoken_rs::tokenizer::get_tokenizer(model) {
                Some(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase) => {
                    tiktoken_rs::cl100k_base_singleton()
                }
                _ => tiktoken_rs::o200k_base_singleton(),
            };
            bpe.encode_ordinary(text).len() as u64
        }
        _ => super::estimate_tokens(text),
    }
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
    fn each_generation_counts_with_its_own_encoding() {
        // Text whose counts differ between the two encodings, so a model given the
        // other one's would fail here.
        let text = "Привет! Это проверка токенизатора: сколько токенов?";
        let cl100k = tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(text)
            .len() as u64;
        let o200k = tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(text)
            .len() as u64;
        assert_ne!(cl100k, o200k);
        for model in ["gpt-4", "gpt-4-0613", "gpt-3.5-turbo"] {
            assert_eq!(
                count_tokens(ProviderKind::Openai, model, text),
                cl100k,
                "{model}"
            );
        }
        for model in [
            "gpt-4o",
            "gpt-4.1-mini",
            "o3",
            "gpt-oss-120b",
            "my-deployment",
        ] {
            assert_eq!(
                count_tokens(ProviderKind::Openai, model, text),
                o200k,
                "{model}"
            );
        }
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
