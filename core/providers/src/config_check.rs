//! Checks of a provider's endpoint and credentials that need more than its own
//! fields: whether its kind needs a key at all (a self-hosted OpenAI-compatible server
//! does not; api.openai.com does), and, for Bedrock, the AWS environment variables
//! that stand in for keys left out of the file. A failure names the provider, the key
//! to set and why, so `chorus config check` says what to fix before a request fails.

use crate::config::{AliasConfig, ProviderConfig, ProviderKind};
use chorus_model::config::{ConfigError, invalid};
use std::collections::BTreeMap;
use std::collections::HashSet;

/// Headers that carry credentials in place of `api_key` (e.g. an Entra ID token for
/// Azure, or a proxy's own key).
const AUTH_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key", "x-goog-api-key"];

/// Fails on the first provider whose kind needs credentials it does not have.
pub fn check_credentials(
    providers: &[ProviderConfig],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (i, p) in providers.iter().enumerate() {
        let set = |v: Option<&chorus_model::secret::Secret>| {
            v.is_some_and(|s| !s.expose().trim().is_empty())
        };
        let has_key = set(p.api_key.as_ref());
        let has_auth_header = p
            .headers
            .keys()
            .any(|h| AUTH_HEADERS.contains(&h.to_ascii_lowercase().as_str()));
        let missing = |key: &str, why: String| {
            Err(ConfigError::Missing {
                key: format!("providers[{i}].{key}"),
                why,
            })
        };
        match p.kind {
            ProviderKind::Bedrock => {
                let has_secret = set(p.secret_key.as_ref());
                let in_env = |name: &str| env.get(name).is_some_and(|v| !v.trim().is_empty());
                if has_key && !has_secret {
                    return missing(
                        "secret_key",
                        format!(
                            "provider `{}` (kind = \"bedrock\") has an access key id in api_key \
                             but no secret_key to sign with",
                            p.id
                        ),
                    );
                }
                if has_secret && !has_key {
                    return missing(
                        "api_key",
                        format!(
                            "provider `{}` (kind = \"bedrock\") has a secret_key but no access key id \
                             in api_key",
                            p.id
                        ),
                    );
                }
                let env_keys = in_env("AWS_ACCESS_KEY_ID") && in_env("AWS_SECRET_ACCESS_KEY");
                if !(has_key || env_keys) {
                    return missing(
                        "api_key",
                        format!(
                            "provider `{}` (kind = \"bedrock\") needs AWS credentials: set api_key \
                             (the access key id) and secret_key, or AWS_ACCESS_KEY_ID and \
                             AWS_SECRET_ACCESS_KEY in the environment",
                            p.id
                        ),
                    );
                }
            }
            kind if needs_api_key(kind, p.base_url.as_deref()) && !has_key && !has_auth_header => {
                let kind_name = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                return missing(
                    "api_key",
                    format!(
                        "provider `{}` (kind = \"{kind_name}\") needs an API key: set api_key \
                         (e.g. api_key = \"${{MY_API_KEY}}\") or send one in headers",
                        p.id
                    ),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether requests of `kind` to `base_url` are refused without a key. OpenAI's wire
/// formats are spoken by servers that need none (vLLM, LM Studio, Ollama's `/v1`), so
/// only the official endpoint (the default) requires one.
fn needs_api_key(kind: ProviderKind, base_url: Option<&str>) -> bool {
    match kind {
        ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Azure => true,
        ProviderKind::Openai | ProviderKind::OpenaiResponses => base_url
            .and_then(|u| url::Url::parse(u).ok())
            .is_none_or(|u| u.host_str() == Some("api.openai.com")),
        ProviderKind::Ollama | ProviderKind::Scripted | ProviderKind::Bedrock => false,
    }
}

/// Why `base_url` is not a usable endpoint, if it is not.
fn base_url_problem(base_url: &str) -> Option<String> {
    match url::Url::parse(base_url) {
        Err(e) => Some(format!("an http:// or https:// URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "an http:// or https:// URL (the scheme is `{}`)",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            Some("an http:// or https:// URL with a host".to_string())
        }
        Ok(_) => None,
    }
}

/// Checks every `[[providers]]` entry on its own: a usable id, endpoint, region,
/// model list, prices and pacing. Credentials are checked by [`check_credentials`],
/// which also reads the environment.
pub fn validate_providers(providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        let key = |field: &str| format!("providers[{i}].{field}");
        if p.id.is_empty() || p.id.contains('/') || p.id.chars().any(char::is_whitespace) {
            return Err(invalid(
                key("id"),
                &p.id,
                "a non-empty name without `/` or spaces",
            ));
        }
        if !seen.insert(p.id.clone()) {
            return Err(invalid(key("id"), &p.id, "a name no other provider uses"));
        }
        if let Some(base) = &p.base_url
            && let Some(problem) = base_url_problem(base)
        {
            return Err(invalid(key("base_url"), base, &problem));
        }
        if p.kind == ProviderKind::Azure && p.base_url.is_none() {
            return Err(invalid(
                key("base_url"),
                "",
                "the resource endpoint, e.g. https://RESOURCE.openai.azure.com",
            ));
        }
        if p.kind == ProviderKind::Bedrock
            && p.region.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(invalid(
                key("region"),
                p.region.as_deref().unwrap_or_default(),
                "the AWS region of the Bedrock endpoint, e.g. us-east-1 (required for kind = \"bedrock\")",
            ));
        }
        if p.kind.needs_model_list() && p.models.is_empty() {
            return Err(invalid(key("models"), "[]", "at least one model name"));
        }
        for (model, meta) in &p.model_info {
            let prices = [
                ("prompt_price", meta.prompt_price),
                ("completion_price", meta.completion_price),
                ("cached_prompt_price", meta.cached_prompt_price),
            ];
            for (field, price) in prices {
                if let Some(price) = price
                    && !(price >= 0.0 && price.is_finite())
                {
                    return Err(invalid(
                        format!("providers[{i}].model_info.{model}.{field}"),
                        price.to_string(),
                        "a price of zero or more credits per million tokens",
                    ));
                }
            }
        }
        if let Some(tps) = p.tokens_per_second
            && !(tps > 0.0 && tps.is_finite())
        {
            return Err(invalid(
                key("tokens_per_second"),
                tps.to_string(),
                "a positive number",
            ));
        }
    }
    Ok(())
}

/// Checks every `[[aliases]]` entry against the providers in effect: a name that is
/// not a provider's, and a chain of models those providers serve.
pub fn validate_aliases(
    aliases: &[AliasConfig],
    providers: &[ProviderConfig],
) -> Result<(), ConfigError> {
    for (i, alias) in aliases.iter().enumerate() {
        let key = |field: &str| format!("aliases[{i}].{field}");
        if alias.name.is_empty()
            || alias.name.contains('/')
            || providers.iter().any(|p| p.id == alias.name)
        {
            return Err(invalid(
                key("name"),
                &alias.name,
                "a name without `/` that is not a provider id",
            ));
        }
        if alias.models.is_empty() {
            return Err(invalid(key("models"), "[]", "at least one PROVIDER/MODEL"));
        }
        for (j, model) in alias.models.iter().enumerate() {
            if !names_a_model(providers, model) {
                return Err(invalid(
                    format!("aliases[{i}].models[{j}]"),
                    model,
                    "PROVIDER/MODEL naming a configured provider and one of its models",
                ));
            }
        }
    }
    Ok(())
}

/// Whether `PROVIDER/MODEL` names a configured provider and one of its models (any
/// model, for a provider that discovers its models).
pub fn names_a_model(providers: &[ProviderConfig], model: &str) -> bool {
    model.split_once('/').is_some_and(|(pid, m)| {
        providers
            .iter()
            .any(|p| p.id == pid && (p.models.is_empty() || p.models.iter().any(|x| x == m)))
    })
}
