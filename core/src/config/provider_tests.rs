//! The `[[providers]]` checks as `chorus config check` runs them: whole config in, error out.

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
        let ok =
            format!("id = \"p1\"\nkind = \"{kind}\"\n{base}api_key = \"k\"\nmodels = [\"m\"]\n");
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
    check(
        "id = \"a\"\nkind = \"anthropic\"\nmodels = [\"m\"]\nheaders = { \"x-api-key\" = \"k\" }\n",
        &[],
    )
    .unwrap();
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

#[test]
fn config_requires_a_region() {
    let toml = |region: &str| {
        format!(
            "[[providers]]\nid = \"bedrock\"\nkind = \"bedrock\"\n{region}api_key = \"AKID\"\nsecret_key = \"s\"\nmodels = [\"amazon.nova-pro-v1:0\"]\n"
        )
    };
    let env = std::collections::BTreeMap::new();
    let err = Config::from_toml(&toml(""), &env).unwrap_err().to_string();
    assert!(
        err.contains("providers[0].region") && err.contains("us-east-1"),
        "{err}"
    );
    let config = Config::from_toml(&toml("region = \"us-west-2\"\n"), &env).unwrap();
    assert_eq!(config.providers[0].region.as_deref(), Some("us-west-2"));
}
