//! Settings of the single sign-on providers (`[[auth.oidc]]`, `[[auth.oauth2]]`) and
//! their validation, kept apart from the rest of the config because only SSO reads them.

use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What an OpenID Connect provider is, which decides the platform its identities
/// belong to.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OidcKind {
    /// Any standard issuer: identities are `oidc:<id>` keyed by the `sub` claim.
    #[default]
    Generic,
    /// "Sign in with Slack": identities are `slack` keyed by the Slack user id (the
    /// `https://slack.com/user_id` claim), the same id the Slack bot sees.
    Slack,
}

/// One OpenID Connect provider (discovery, authorization code flow with PKCE).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Short name used in URLs (`/api/auth/sso/ID/start`): letters, digits, `-`, `_`.
    pub id: String,
    /// Label of the login button.
    pub name: String,
    #[serde(default)]
    pub kind: OidcKind,
    /// Issuer URL; `ISSUER/.well-known/openid-configuration` is read at login.
    pub issuer: String,
    pub client_id: String,
    /// Absent for a public client.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Scopes asked for; `openid` is always added.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// When not empty, only verified emails of these domains may log in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Claim that carries groups or roles (a string or a list of strings), e.g. `groups`.
    #[serde(default)]
    pub admin_claim: Option<String>,
    /// Value of `admin_claim` that makes the account an admin; without it the account
    /// is a user. Checked at every login through this provider.
    #[serde(default)]
    pub admin_value: Option<String>,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

/// Which OAuth2 (non-OIDC) provider this is: it decides the endpoints and how the user
/// is read.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Kind {
    /// Identities `discord`, keyed by the Discord user id (what the Discord bot sees).
    Discord,
    /// Identities `github`, keyed by the numeric GitHub user id.
    Github,
}

/// One OAuth2 provider that is not OpenID Connect (Discord, GitHub).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ProviderConfig {
    /// Short name used in URLs: letters, digits, `-`, `_`.
    pub id: String,
    /// Label of the login button.
    pub name: String,
    pub kind: OAuth2Kind,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked for; empty: `identify email` (Discord), `read:user user:email` (GitHub).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Overrides of the documented endpoints (for GitHub Enterprise or tests).
    #[serde(default)]
    pub authorize_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    /// Base of the REST API that returns the user (`/users/@me`, `/user`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// When not empty, only verified emails of these domains may log in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
}

impl OAuth2ProviderConfig {
    pub fn effective_scopes(&self) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        match self.kind {
            OAuth2Kind::Discord => vec!["identify".into(), "email".into()],
            OAuth2Kind::Github => vec!["read:user".into(), "user:email".into()],
        }
    }

    pub fn effective_authorize_url(&self) -> String {
        self.authorize_url.clone().unwrap_or_else(|| {
            match self.kind {
                OAuth2Kind::Discord => "https://discord.com/oauth2/authorize",
                OAuth2Kind::Github => "https://github.com/login/oauth/authorize",
            }
            .into()
        })
    }

    pub fn effective_token_url(&self) -> String {
        self.token_url.clone().unwrap_or_else(|| {
            match self.kind {
                OAuth2Kind::Discord => "https://discord.com/api/oauth2/token",
                OAuth2Kind::Github => "https://github.com/login/oauth/access_token",
            }
            .into()
        })
    }

    pub fn effective_api_url(&self) -> String {
        self.api_url
            .clone()
            .unwrap_or_else(|| {
                match self.kind {
                    OAuth2Kind::Discord => "https://discord.com/api",
                    OAuth2Kind::Github => "https://api.github.com",
                }
                .into()
            })
            .trim_end_matches('/')
            .to_string()
    }
}

/// A violated SSO setting: the key, its value and what was expected.
pub(crate) struct SsoConfigProblem {
    pub key: String,
    pub value: String,
    pub expected: &'static str,
}

fn problem(key: String, value: &str, expected: &'static str) -> SsoConfigProblem {
    SsoConfigProblem {
        key,
        value: value.to_string(),
        expected,
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// Checks the SSO providers and the public URL their redirects are built from.
pub(crate) fn validate(
    public_url: Option<&str>,
    oidc: &[OidcProviderConfig],
    oauth2: &[OAuth2ProviderConfig],
) -> Result<(), SsoConfigProblem> {
    if let Some(url) = public_url
        && !is_http_url(url)
    {
        return Err(problem(
            "auth.public_url".into(),
            url,
            "the http(s) URL browsers reach this server at, e.g. https://chat.example.com",
        ));
    }
    if public_url.is_none() && !(oidc.is_empty() && oauth2.is_empty()) {
        return Err(problem(
            "auth.public_url".into(),
            "",
            "the URL browsers reach this server at (SSO redirect URLs are built from it)",
        ));
    }
    let mut seen = HashSet::new();
    let ids = oidc
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                format!("auth.oidc[{i}]"),
                &p.id,
                &p.name,
                &p.allowed_email_domains,
            )
        })
        .chain(oauth2.iter().enumerate().map(|(i, p)| {
            (
                format!("auth.oauth2[{i}]"),
                &p.id,
                &p.name,
                &p.allowed_email_domains,
            )
        }));
    for (key, id, name, domains) in ids {
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(problem(
                format!("{key}.id"),
                id,
                "1-64 letters, digits, `-` or `_`",
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(problem(
                format!("{key}.id"),
                id,
                "a name no other SSO provider uses",
            ));
        }
        if name.trim().is_empty() {
            return Err(problem(format!("{key}.name"), name, "a button label"));
        }
        for d in domains {
            if d.is_empty() || d.contains('@') || d.chars().any(char::is_whitespace) {
                return Err(problem(
                    format!("{key}.allowed_email_domains"),
                    d,
                    "domain names such as example.com",
                ));
            }
        }
    }
    for (i, p) in oidc.iter().enumerate() {
        if !is_http_url(&p.issuer) {
            return Err(problem(
                format!("auth.oidc[{i}].issuer"),
                &p.issuer,
                "the issuer's http(s) URL",
            ));
        }
        if p.client_id.is_empty() {
            return Err(problem(
                format!("auth.oidc[{i}].client_id"),
                "",
                "the client id registered at the issuer",
            ));
        }
        if p.admin_claim.is_some() != p.admin_value.is_some() {
            return Err(problem(
                format!("auth.oidc[{i}].admin_value"),
                p.admin_value.as_deref().unwrap_or_default(),
                "admin_claim and admin_value set together (or neither)",
            ));
        }
    }
    for (i, p) in oauth2.iter().enumerate() {
        if p.client_id.is_empty() || p.client_secret.is_empty() {
            return Err(problem(
                format!("auth.oauth2[{i}].client_secret"),
                "",
                "the client id and secret registered with the provider",
            ));
        }
        for (field, url) in [
            ("authorize_url", &p.authorize_url),
            ("token_url", &p.token_url),
            ("api_url", &p.api_url),
        ] {
            if let Some(url) = url
                && !is_http_url(url)
            {
                return Err(problem(
                    format!("auth.oauth2[{i}].{field}"),
                    url,
                    "an http(s) URL",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::BTreeMap;

    fn err(text: &str) -> String {
        Config::from_toml(text, &BTreeMap::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const OIDC: &str = "[[auth.oidc]]\nid = \"corp\"\nname = \"Corp\"\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\n";

    #[test]
    fn sso_settings_are_validated_with_the_key_named() {
        assert!(err(OIDC).contains("auth.public_url"), "{}", err(OIDC));
        let ok = format!("[auth]\npublic_url = \"https://chat.example.com\"\n{OIDC}");
        assert_eq!(err(&ok), "");
        let dup = format!("{ok}{OIDC}");
        assert!(err(&dup).contains("auth.oidc[1].id"), "{}", err(&dup));
        let half = format!("{ok}admin_claim = \"groups\"\n");
        assert!(err(&half).contains("admin_value"), "{}", err(&half));
        let bad_issuer = ok.replace("https://id.example.com", "id.example.com");
        assert!(err(&bad_issuer).contains("auth.oidc[0].issuer"));
        let bad_id = ok.replace("id = \"corp\"", "id = \"a/b\"");
        assert!(err(&bad_id).contains("auth.oidc[0].id"));
        let discord = "[auth]\npublic_url = \"https://c.example\"\n[[auth.oauth2]]\nid = \"d\"\nname = \"D\"\nkind = \"discord\"\nclient_id = \"1\"\nclient_secret = \"\"\n";
        assert!(
            err(discord).contains("auth.oauth2[0].client_secret"),
            "{}",
            err(discord)
        );
    }

    #[test]
    fn client_secrets_are_masked_in_the_dump() {
        let text = "[auth]\npublic_url = \"https://c.example\"\n[[auth.oauth2]]\nid = \"d\"\nname = \"D\"\nkind = \"github\"\nclient_id = \"1\"\nclient_secret = \"gh-very-secret\"\n";
        let config = Config::from_toml(text, &BTreeMap::new()).unwrap();
        assert!(!config.masked_toml().contains("gh-very-secret"));
        assert_eq!(
            config.auth.oauth2[0].effective_api_url(),
            "https://api.github.com"
        );
    }
}
