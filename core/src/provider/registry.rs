//! The configured providers and the models they serve, addressed as `provider/model`.

use super::{OpenAiProvider, Provider, ScriptedProvider};
use crate::config::{ProviderConfig, ProviderKind};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("unknown model {0:?}: expected PROVIDER/MODEL as listed by GET /api/models")]
    UnknownModel(String),
}

pub struct ProviderRegistry {
    providers: HashMap<String, (Arc<dyn Provider>, ProviderConfig)>,
    models: Vec<ModelInfo>,
    default_model: String,
}

impl ProviderRegistry {
    /// Builds every provider from config. `default_model` falls back to the first model.
    pub fn from_config(configs: &[ProviderConfig], default_model: Option<&str>) -> Self {
        let mut providers = HashMap::new();
        let mut models = Vec::new();
        for cfg in configs {
            let provider: Arc<dyn Provider> = match cfg.kind {
                ProviderKind::Openai => Arc::new(OpenAiProvider::new(cfg)),
                ProviderKind::Scripted => Arc::new(ScriptedProvider::from_config(cfg)),
            };
            let names = if cfg.models.is_empty() {
                vec!["demo".to_string()]
            } else {
                cfg.models.clone()
            };
            for model in names {
                let scripted = cfg.kind == ProviderKind::Scripted;
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
            default_model,
        }
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// The provider and provider-side model name for a `provider/model` reference.
    pub fn resolve(&self, model_ref: &str) -> Result<(Arc<dyn Provider>, String), ResolveError> {
        let known = self.models.iter().find(|m| m.id == model_ref);
        let (info, (provider, _)) = known
            .and_then(|m| self.providers.get(&m.provider).map(|p| (m, p)))
            .ok_or_else(|| ResolveError::UnknownModel(model_ref.to_string()))?;
        Ok((provider.clone(), info.model.clone()))
    }
}
