//! Checks of a provider's endpoint and credentials that need more than its own
//! fields: whether its kind needs a key at all (a self-hosted OpenAI-compatible server
//! does not; api.openai.com does), and, for Bedrock, the AWS environment variables
//! that stand in for keys left out of the file. A failure names the provider, the key
//! to set and why, so `chorus config check` says what to fix before a request fails.

use super::{ConfigError, ProviderConfig, ProviderKind};
use std::collections::BTreeMap;

/// Headers that carry credentials in place of `api_key` (e.g. an Entra ID token for
/// Azure, or a proxy's own key).
const AUTH_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key", "x-goog-api-key"];

/// Fails on the first provider whose kind needs credentials it does not have.
pub(super) fn check_credentials(
    providers: &[ProviderConfig],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (i, p) in providers.iter().enumerate() {
        let set =
            |v: Option<&crate::secret::Secret>| v.is_some_and(|s| !s.expose().trim().is_empty());
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
pub(super) fn base_url_problem(base_url: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::BTreeMap;

    fn check(provider: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml(&format!("[[providers]]\n{provider}"), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn kinds_that_need_a_key_name_the_provider_and_the_setting() {
        for kind in ["anthropic", "gemini", "azure", "openai", "openai_responses"] {
            let base = if kind == "azure" {
                "base_url = \"https://r.openai.azure.com\"\n"
            } else {
                ""
            };
            let err = check(
                &format!("id = \"p1\"\nkind = \"{kind}\"\n{base}models = [\"m\"]\n"),
                &[],
            )
            .unwrap_err();
            assert!(
                err.contains("providers[0].api_key")
                    && err.contains("provider `p1`")
                    && err.contains(&format!("kind = \"{kind}\"")),
                "{err}"
            );
            let ok = format!(
                "id = \"p1\"\nkind = \"{kind}\"\n{base}api_key = \"k\"\nmodels = [\"m\"]\n"
            );
            check(&ok, &[]).unwrap();
        }
    }

    #[test]
    fn self_hosted_openai_servers_and_ollama_need_no_key() {
        check("id = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\nmodels = [\"m\"]\n", &[]).unwrap();
        check("id = \"o\"\nkind = \"ollama\"\n", &[]).unwrap();
        let err = check("id = \"o\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\nmodels = [\"m\"]\n", &[]).unwrap_err();
        assert!(err.contains("api_key"), "{err}");
        // A credential header stands in for the key.
        check("id = \"a\"\nkind = \"anthropic\"\nmodels = [\"m\"]\nheaders = { \"x-api-key\" = \"k\" }\n", &[]).unwrap();
    }

    #[test]
    fn bedrock_needs_both_keys_or_the_aws_environment() {
        let base = "id = \"b\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\nmodels = [\"m\"]\n";
        let err = check(base, &[]).unwrap_err();
        assert!(
            err.contains("providers[0].api_key") && err.contains("AWS_ACCESS_KEY_ID"),
            "{err}"
        );
        check(
            base,
            &[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
            ],
        )
        .unwrap();
        let err = check(&format!("{base}api_key = \"AKID\"\n"), &[]).unwrap_err();
        assert!(err.contains("providers[0].secret_key"), "{err}");
        check(
            &format!("{base}api_key = \"AKID\"\nsecret_key = \"s\"\n"),
            &[],
        )
        .unwrap();
    }

    #[test]
    fn malformed_base_urls_are_named() {
        for (url, why) in [
            ("http://exa mple.com/v1", "invalid"),
            ("http://127.0.0.1:99999/v1", "invalid port"),
            ("ftp://example.com", "scheme is `ftp`"),
            ("api.openai.com/v1", "relative URL"),
        ] {
            let err = check(
                &format!("id = \"o\"\nkind = \"openai\"\napi_key = \"k\"\nbase_url = \"{url}\"\nmodels = [\"m\"]\n"),
                &[],
            )
            .unwrap_err();
            assert!(
                err.contains("providers[0].base_url") && err.contains(url) && err.contains(why),
                "{url}: {err}"
            );
        }
    }
}
