//! Model providers behind one streaming trait.
//!
//! Every provider turns its own wire format into [`ProviderEvent`]s and its own
//! failures into a [`ProviderError`] that says whether another attempt (or a fallback
//! provider) may help. The engine never sees a provider's wire format.

mod anthropic;
mod bedrock;
pub mod config;
pub mod config_check;
#[cfg(test)]
mod fuzz_tests;
mod gemini;
mod health;
mod ollama;
mod openai;
mod openai_responses;
mod registry;
mod scripted;
mod tokens;
mod wire;

pub use anthropic::AnthropicProvider;
pub use bedrock::BedrockProvider;
pub use gemini::GeminiProvider;
pub use health::{HealthBook, ProviderHealth};
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;
pub use openai_responses::OpenAiResponsesProvider;
pub use registry::{ModelInfo, ProviderRegistry, ResolveError, Target};
pub use scripted::{DEFAULT_SCRIPT, ScriptedProvider};
pub use tokens::{QUICK_PROMPT_BYTES, count_tokens, estimate_usage, prompt_is_quick};

pub use chorus_model::chat::{ChatMessage, ChatRole, ToolCall, ToolSpec};
use futures::Stream;
use serde::Serialize;
use std::pin::Pin;
use std::time::Duration;

/// Whether and which tools the model may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (the default when tools are offered).
    Auto,
    /// No tool call, even though tools are listed.
    None,
    /// At least one tool call.
    Required,
    /// This tool, by name.
    Tool(String),
}

/// One normalized generation request.
#[derive(Clone, Debug, Default)]
pub struct ChatRequest {
    /// The provider's own model name (without the `provider/` prefix).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// `low`, `medium` or `high`: how hard a reasoning model should think.
    pub reasoning_effort: Option<String>,
    /// Partial assistant text to continue from, without repeating it.
    pub prefill: Option<String>,
    /// Tools the model may call (empty: none offered).
    pub tools: Vec<ToolSpec>,
    /// `None` means the provider's default (auto when tools are offered).
    pub tool_choice: Option<ToolChoice>,
    /// Best-effort determinism (OpenAI's `seed`); only Chat Completions providers
    /// (`openai`, `azure`) take it: [`config::ProviderKind::takes_openai_extras`].
    pub seed: Option<i64>,
    /// OpenAI's `response_format` object (`json_object`, `json_schema`), passed as
    /// given; only Chat Completions providers take it.
    pub response_format: Option<serde_json::Value>,
    /// Nobody reads the reply before it is complete (a gateway request that did not
    /// ask to stream): a provider that [answers whole](Provider::answers_whole)
    /// makes one non-streaming call, which costs it and Chorus far less than a
    /// stream of chunks, and yields the whole reply as its events at once. Others
    /// stream as always.
    pub whole_reply: bool,
}

/// Token counts of a generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// All generated tokens, reasoning included.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those served from the provider's prompt cache (priced lower).
    pub cached_prompt_tokens: u64,
    /// Of `completion_tokens`, those spent on hidden reasoning.
    pub reasoning_tokens: u64,
    /// True when the provider reported nothing and Chorus counted itself.
    pub estimated: bool,
}

/// What a provider streams.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderEvent {
    Text(String),
    Reasoning(String),
    Usage(Usage),
    /// A complete tool call, emitted once its arguments have fully streamed; parallel
    /// calls come as several events, in the model's order.
    ToolCall(ToolCall),
    /// The provider's finish reason, normalized (`stop`, `length`, `content_filter`,
    /// `tool_calls`, ...).
    Finished(String),
}

pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    /// Could not connect or the connection broke.
    Connect,
    /// No answer (or no next chunk) in time.
    Timeout,
    /// HTTP 429 or a provider's rate-limit error.
    RateLimited,
    /// HTTP 5xx or an overloaded provider.
    Server,
    /// Bad or missing credentials.
    Auth,
    /// The provider refused the request as malformed (unknown model, bad parameter).
    BadRequest,
    /// The provider sent something that is not its documented format.
    Protocol,
    /// An error event in the middle of a stream.
    Upstream,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    pub message: String,
    /// What the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ProviderErrorKind {
    /// The kind as its snake_case name (a metric label, a span attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderErrorKind::Connect => "connect",
            ProviderErrorKind::Timeout => "timeout",
            ProviderErrorKind::RateLimited => "rate_limited",
            ProviderErrorKind::Server => "server",
            ProviderErrorKind::Auth => "auth",
            ProviderErrorKind::BadRequest => "bad_request",
            ProviderErrorKind::Protocol => "protocol",
            ProviderErrorKind::Upstream => "upstream",
        }
    }
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether trying again (or another provider) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::Connect
                | ProviderErrorKind::Timeout
                | ProviderErrorKind::RateLimited
                | ProviderErrorKind::Server
        )
    }
}

/// A model backend.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Starts a generation. Errors before the first event come back here; errors
    /// after it come through the stream.
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError>;

    /// Whether a request for a whole reply ([`ChatRequest::whole_reply`]) is one
    /// non-streaming call here, whose first event comes only with the whole reply: the
    /// engine then gives it `whole_reply_timeout_secs` instead of the first-token
    /// timeout. Providers that always stream keep the default.
    fn answers_whole(&self) -> bool {
        false
    }

    /// The models the provider serves, for providers whose config lists none (Ollama
    /// lists its local models). Empty when the provider cannot tell.
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A rough token count for providers that report none (about four characters a token).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
