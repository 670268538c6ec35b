//! The configured providers and the models they serve, addressed as `provider/model`.

use super::health::HealthBook;
use super::{
    AnthropicProvider, GeminiProvider, OllamaProvider, OpenAiProvider, OpenAiResponsesProvider,
    Provider, ScriptedProvider,
};
use crate::config::{AliasConfig, ModelMeta, ProviderConfig, ProviderKind};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A model as listed to clients.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// `provider/model`, what requests name.
    pub id: String,
    pub provider: String,
    pub model: String,
    pub kind: ProviderKind,
    /// Human label; scripted models say so.
    pub label: String,
    /// True for the deterministic demo provider, so clients can warn that no real model
    /// is configured.
    pub scripted: bool,
    /// For an alias: the `provider/model`s it tries, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Context window and prices, as configured.
    #[serde(flatten)]
    pub meta: ModelMeta,
}

/// One entry of a model's fallback chain, ready to call.
#[derive(Clone)]
pub struct Target {
    /// `provider/model`.
    pub model_ref: String,
    /// The provider's id (for health records).
    pub provider_id: String,
    /// The provider's wire format (for usage estimates).
    pub kind: ProviderKind,
    pub provider: Arc<dyn Provider>,
    /// The provider's own model name.
    pub model: String,
    pub max_retries: u32,
    pub max_retry_wait: Duration,
    pub first_token_timeout: Duration,
    /// How long a whole (non-streamed) reply may take, on kinds that answer whole.
    pub whole_reply_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("unknown model {0:?}: expected PROVIDER/MODEL as listed by GET /api/models")]
    UnknownModel(String),
}

pub struct ProviderRegistry {
    providers: HashMap<String, (Arc<dyn Provider>, ProviderConfig)>,
    models: Vec<ModelInfo>,
    aliases: HashMap<String, Vec<String>>,
    default_model: String,
    health: HealthBook,
}

impl ProviderRegistry {
    /// Builds every provider from config. `default_model` falls back to the first model.
    pub fn from_config(configs: &[ProviderConfig], default_model: Option<&str>) -> Self {
        let mut providers = HashMap::new();
        let mut models = Vec::new();
        for cfg in configs {
            let provider: Arc<dyn Provider> = match cfg.kind {
                ProviderKind::Openai | ProviderKind::Azure => Arc::new(OpenAiProvider::new(cfg)),
                ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(cfg)),
                ProviderKind::Gemini => Arc::new(GeminiProvider::new(cfg)),
                ProviderKind::Ollama => Arc::new(OllamaProvider::new(cfg)),
                ProviderKind::Scripted => Arc::new(ScriptedProvider::from_config(cfg)),
                ProviderKind::OpenaiResponses => Arc::new(OpenAiResponsesProvider::new(cfg)),
                ProviderKind::Bedrock => Arc::new(super::BedrockProvider::new(cfg)),
            };
            // Other kinds without models discover them (`discover_models`).
            let names = if cfg.models.is_empty() && cfg.kind == ProviderKind::Scripted {
                vec!["demo".to_string()]
            } else {
                cfg.models.clone()
            };
            for model in names {
                let scripted = cfg.kind == ProviderKind::Scripted;
                let meta = cfg.model_info.get(&model).cloned().unwrap_or_default();
                models.push(ModelInfo {
                    id: format!("{}/{}", cfg.id, model),
                    provider: cfg.id.clone(),
                    label: if scripted {
                        format!("{model} (scripted demo, not a real model)")
                    } else {
                        model.clone()
                    },
                    model,
                    kind: cfg.kind,
                    scripted,
                    fallbacks: Vec::new(),
                    meta,
                });
            }
            providers.insert(cfg.id.clone(), (provider, cfg.clone()));
        }
        let default_model = default_model
            .map(str::to_string)
            .or_else(|| models.first().map(|m| m.id.clone()))
            .unwrap_or_default();
        Self {
            providers,
            models,
            aliases: HashMap::new(),
            default_model,
            health: HealthBook::default(),
        }
    }

    /// Asks each provider configured without models which ones it serves (Ollama lists
    /// its local models) and adds them. A provider that cannot answer is skipped with a
    /// warning, so Chorus starts without it; its models appear at the next start.
    pub async fn discover_models(&mut self) {
        const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
        let mut pending: Vec<(String, Arc<dyn Provider>, ProviderKind)> = self
            .providers
            .iter()
            .filter(|(_, (_, cfg))| cfg.models.is_empty() && cfg.kind != ProviderKind::Scripted)
            .map(|(id, (provider, cfg))| (id.clone(), provider.clone(), cfg.kind))
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let answers = futures::future::join_all(pending.iter().map(|(_, provider, _)| {
            tokio::time::timeout(DISCOVERY_TIMEOUT, provider.list_models())
        }))
        .await;
        for ((id, _, kind), answer) in pending.into_iter().zip(answers) {
            let names = match answer {
                Ok(Ok(names)) => names,
                Ok(Err(e)) => {
                    tracing::warn!(provider = %id, error = %e, "cannot list the provider's models; it serves none until the next start");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(provider = %id, timeout = ?DISCOVERY_TIMEOUT, "the provider did not list its models in time; it serves none until the next start");
                    continue;
                }
            };
            if names.is_empty() {
                tracing::warn!(provider = %id, "the provider lists no models");
            } else {
                tracing::info!(provider = %id, models = ?names, "discovered models");
            }
            for model in names {
                let model_id = format!("{id}/{model}");
                if self.models.iter().any(|m| m.id == model_id) {
                    continue;
                }
                let meta = self
                    .providers
                    .get(&id)
                    .and_then(|(_, cfg)| cfg.model_info.get(&model).cloned())
                    .unwrap_or_default();
                self.models.push(ModelInfo {
                    id: model_id,
                    provider: id.clone(),
                    label: model.clone(),
                    model,
                    kind,
                    scripted: false,
                    fallbacks: Vec::new(),
                    meta,
                });
            }
        }
        if self.default_model.is_empty()
            && let Some(first) = self.models.first()
        {
            self.default_model = first.id.clone();
        }
    }

    /// Adds model aliases (validated by config): each is listed as a model whose
    /// requests try its chain in order.
    pub fn add_aliases(&mut self, aliases: &[AliasConfig]) {
        for alias in aliases {
            let first = self
                .models
                .iter()
                .find(|m| alias.models.first() == Some(&m.id))
                .cloned();
            let Some(first) = first else { continue };
            self.models.push(ModelInfo {
                id: alias.name.clone(),
                provider: first.provider,
                model: first.model,
                kind: first.kind,
                label: format!("{} ({})", alias.name, alias.models.join(" → ")),
                scripted: first.scripted,
                fallbacks: alias.models.clone(),
                meta: first.meta,
            });
            self.aliases
                .insert(alias.name.clone(), alias.models.clone());
        }
    }

    /// The ordered targets a model reference stands for: one for `provider/model`,
    /// the chain for an alias.
    pub fn resolve_chain(&self, model_ref: &str) -> Result<Vec<Target>, ResolveError> {
        let refs = match self.aliases.get(model_ref) {
            Some(chain) => chain.clone(),
            None => vec![model_ref.to_string()],
        };
        refs.iter()
            .map(|r| {
                let info = self
                    .models
                    .iter()
                    .find(|m| &m.id == r && m.fallbacks.is_empty())
                    .ok_or_else(|| ResolveError::UnknownModel(r.clone()))?;
                let (provider, cfg) = self
                    .providers
                    .get(&info.provider)
                    .ok_or_else(|| ResolveError::UnknownModel(r.clone()))?;
                Ok(Target {
                    model_ref: r.clone(),
                    provider_id: info.provider.clone(),
                    kind: cfg.kind,
                    provider: provider.clone(),
                    model: info.model.clone(),
                    max_retries: cfg.max_retries,
                    max_retry_wait: Duration::from_secs(cfg.max_retry_wait_secs),
                    first_token_timeout: Duration::from_secs(cfg.first_token_timeout_secs),
                    whole_reply_timeout: Duration::from_secs(cfg.whole_reply_timeout_secs),
                })
            })
            .collect()
    }

    /// Recent outcomes of each provider's attempts on this instance.
    pub fn health(&self) -> &HealthBook {
        &self.health
    }

    /// The configured providers' ids and kinds, sorted by id.
    pub fn providers(&self) -> Vec<(String, ProviderKind)> {
        let mut list: Vec<_> = self
            .providers
            .iter()
            .map(|(id, (_, cfg))| (id.clone(), cfg.kind))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// The provider and provider-side model name for a model reference (the first of
    /// an alias's chain).
    pub fn resolve(&self, model_ref: &str) -> Result<(Arc<dyn Provider>, String), ResolveError> {
        let first = self
            .resolve_chain(model_ref)?
            .into_iter()
            .next()
            .ok_or_else(|| ResolveError::UnknownModel(model_ref.to_string()))?;
        Ok((first.provider, first.model))
    }
}
