//! The `[[providers]]` and `[[aliases]]` sections: which model APIs Chorus talks to,
//! with their retry and timeout settings, and the fallback chains that name them.

use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, or any server that speaks it.
    Openai,
    /// Anthropic Messages API (`POST /v1/messages`).
    Anthropic,
    /// Google Gemini API (`streamGenerateContent`).
    Gemini,
    /// Ollama's native chat API (`POST /api/chat`); with no `models`, the local
    /// models are discovered at start (`GET /api/tags`).
    Ollama,
    /// Deterministic local text, for demos and tests.
    Scripted,
    /// Azure OpenAI: Chat Completions per deployment (`models` are deployment names),
    /// key sent as `api-key`, `api_version` in the query.
    Azure,
    /// OpenAI Responses API (`POST /v1/responses`), streamed.
    OpenaiResponses,
    /// AWS Bedrock Converse API (`POST /model/{id}/converse-stream`), SigV4-signed;
    /// needs `region`; `models` are Bedrock model or inference profile ids.
    Bedrock,
}

impl ProviderKind {
    /// Whether the kind speaks Chat Completions and so passes OpenAI's `seed` and
    /// `response_format` through (the gateway refuses them for other kinds).
    pub fn takes_openai_extras(self) -> bool {
        matches!(self, ProviderKind::Openai | ProviderKind::Azure)
    }
}

impl ProviderKind {
    /// Whether the provider needs its model names listed in config (others discover them).
    pub fn needs_model_list(self) -> bool {
        matches!(
            self,
            ProviderKind::Openai
                | ProviderKind::Anthropic
                | ProviderKind::Gemini
                | ProviderKind::Azure
                | ProviderKind::OpenaiResponses
                | ProviderKind::Bedrock
        )
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name used in model references: `ID/MODEL`.
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra HTTP headers sent with every request (values are treated as secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Seconds to wait for the connection and response headers.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait between two streamed chunks before giving up.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Retries of a failure that may pass (connect, 429, 5xx, timeout) before the first
    /// token, with jittered exponential backoff, before a fallback is tried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Longest `Retry-After` honoured, in seconds; a longer one skips to the fallback.
    #[serde(default = "default_max_retry_wait")]
    pub max_retry_wait_secs: u64,
    /// Seconds to wait for the first token after the request was sent; a model that
    /// takes longer counts as timed out (retried, then the alias's next model).
    #[serde(default = "default_first_token_timeout")]
    pub first_token_timeout_secs: u64,
    /// Seconds to wait for a whole reply asked for without streaming (a gateway
    /// request that did not ask to stream, on a provider that answers whole:
    /// [`crate::Provider::answers_whole`]). It replaces the first-token timeout for that
    /// call, since nothing arrives before the reply is complete.
    #[serde(default = "default_whole_reply_timeout")]
    pub whole_reply_timeout_secs: u64,
    /// Provider-specific request parameters merged into every request body as they
    /// are (e.g. `{ seed = 7 }` for OpenAI, `{ top_k = 40 }` for Anthropic).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What is known of each model: context window and prices, by model name.
    #[serde(default)]
    pub model_info: BTreeMap<String, ModelMeta>,
    /// Azure OpenAI: the `api-version` query parameter (default
    /// [`DEFAULT_AZURE_API_VERSION`], the latest GA version of the inference API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// AWS Bedrock: the region (e.g. `us-east-1`), required; it names the default
    /// endpoint and is part of the request signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AWS Bedrock: the secret access key that goes with `api_key` (the access key
    /// id). Without both, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// AWS Bedrock: the session token of temporary credentials (else
    /// `AWS_SESSION_TOKEN` when the keys come from the environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// Scripted provider: the text it replies with.
    pub text: Option<String>,
    /// Scripted provider: pace of the reply.
    pub tokens_per_second: Option<f64>,
}

/// Facts about one model that clients and quotas use. Prices are in credits per
/// million tokens.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Tokens of context the model accepts (prompt and reply together).
    pub context_window: Option<u32>,
    pub prompt_price: Option<f64>,
    pub completion_price: Option<f64>,
    /// Price of prompt tokens served from the provider's cache, where it reports them.
    pub cached_prompt_price: Option<f64>,
}

/// A model name that stands for an ordered fallback chain: failures that may pass
/// (connect errors, 429, 5xx, timeouts) before the first token move to the next model.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// What requests name, e.g. `fast` (no `/`).
    pub name: String,
    /// `provider/model` references, tried in order.
    pub models: Vec<String>,
}

/// The Azure OpenAI `api-version` used when a provider sets none: the latest GA
/// release of the data-plane inference API.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

pub(super) fn default_max_retries() -> u32 {
    2
}

pub(super) fn default_first_token_timeout() -> u64 {
    60
}

pub(super) fn default_max_retry_wait() -> u64 {
    20
}

/// The OpenAI and Anthropic SDKs' own default request timeout.
pub(super) fn default_whole_reply_timeout() -> u64 {
    600
}

pub(super) fn default_connect_timeout() -> u64 {
    30
}

pub(super) fn default_idle_timeout() -> u64 {
    120
}

impl ProviderConfig {
    /// The scripted demo model (`scripted/demo`) Chorus answers with when no provider
    /// is configured, so an empty config still gives a working server.
    pub fn scripted_demo() -> Self {
        ProviderConfig {
            id: "scripted".into(),
            kind: ProviderKind::Scripted,
            base_url: None,
            api_key: None,
            models: vec!["demo".into()],
            headers: BTreeMap::new(),
            connect_timeout_secs: default_connect_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_retries: default_max_retries(),
            max_retry_wait_secs: default_max_retry_wait(),
            first_token_timeout_secs: default_first_token_timeout(),
            whole_reply_timeout_secs: default_whole_reply_timeout(),
            params: serde_json::Map::new(),
            model_info: BTreeMap::new(),
            api_version: None,
            region: None,
            secret_key: None,
            session_token: None,
            text: None,
            tokens_per_second: None,
        }
    }
}
