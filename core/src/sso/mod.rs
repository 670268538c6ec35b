//! Single sign-on: OpenID Connect against any standard issuer (discovery,
//! authorization code flow with PKCE, state and nonce, a verified ID token) and OAuth2
//! for Discord and GitHub, which are not OIDC.
//!
//! This service only speaks to providers: it builds the authorization URL and turns a
//! callback's code into an [`ExternalIdentity`]. Keeping the flow's state, mapping the
//! identity to an account and opening a session is `Core`'s job (`identity.rs`).

pub mod config;
mod http;
mod oidc;
pub mod rules;
mod social;

use config::{OAuth2Kind, OAuth2ProviderConfig, OidcKind, OidcProviderConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a provider's discovery document is reused before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Why a single sign-on step failed. Each says what went wrong in words a user or an
/// operator can act on; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("SSO provider {0:?} is not configured")]
    UnknownProvider(String),
    #[error(
        "the login's state does not match this browser's (start the login again from the login page)"
    )]
    StateMismatch,
    #[error("this login has expired or was already used; start it again from the login page")]
    FlowExpired,
    #[error("the provider did not authorize the login: {0}")]
    Denied(String),
    #[error("cannot read the provider's OpenID configuration: {0}")]
    Discovery(String),
    #[error("the provider refused the authorization code: {0}")]
    TokenExchange(String),
    #[error("the ID token was rejected: {0}")]
    IdToken(String),
    #[error("cannot read the user from the provider: {0}")]
    UserInfo(String),
    #[error("{0}")]
    EmailNotAllowed(String),
    #[error("this {0} identity is already linked to another account")]
    IdentityTaken(String),
    #[error("password login is disabled on this server; log in with single sign-on")]
    LocalPasswordsDisabled,
    #[error("cannot unlink the account's last way to log in")]
    LastWayIn,
    #[error("the local login (the account name) cannot be unlinked")]
    LocalIdentity,
    #[error("internal SSO error: {0}")]
    Internal(String),
}

/// A configured provider as the login page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderInfo {
    pub id: String,
    pub name: String,
    /// `oidc`, `slack`, `discord` or `github` (for the button's look).
    pub kind: &'static str,
}

/// The person a provider vouched for.
#[derive(Clone, Debug)]
pub struct ExternalIdentity {
    /// `oidc:<provider id>`, `slack`, `discord` or `github`.
    pub platform: String,
    /// The id the platform uses for this person (OIDC `sub`, Slack/Discord/GitHub user id).
    pub external_id: String,
    /// What the identity list shows: an email or a user name.
    pub label: String,
    /// Hints for a new account's name, best first.
    pub name_hints: Vec<String>,
    /// `Some` when the provider maps roles: whether this login makes an admin.
    pub admin: Option<bool>,
}

/// Where to send the browser, and the values the callback must be checked against.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    /// Empty for OAuth2 providers (no ID token).
    pub nonce: String,
    /// Empty where the provider does not support PKCE (Discord).
    pub pkce_verifier: String,
}

enum Provider {
    Oidc(OidcProviderConfig),
    OAuth2(OAuth2ProviderConfig),
}

/// The configured providers and the HTTP client that talks to them.
pub struct Sso {
    providers: Vec<(String, Provider)>,
    public_url: String,
    /// Built at first use: admin CLI commands and servers without SSO never pay for it.
    http: OnceLock<http::ProviderHttp>,
    discovery: Mutex<HashMap<String, (Instant, Arc<openidconnect::core::CoreProviderMetadata>)>>,
}

impl Sso {
    /// The configured providers (`[[auth.oidc]]` and `[[auth.oauth2]]`), answering at
    /// `public_url` (`[auth] public_url`).
    pub fn new(
        public_url: Option<&str>,
        oidc: &[OidcProviderConfig],
        oauth2: &[OAuth2ProviderConfig],
    ) -> Self {
        let providers = oidc
            .iter()
            .map(|p| (p.id.clone(), Provider::Oidc(p.clone())))
            .chain(
                oauth2
                    .iter()
                    .map(|p| (p.id.clone(), Provider::OAuth2(p.clone()))),
            )
            .collect();
        Self {
            providers,
            public_url: public_url
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            http: OnceLock::new(),
            discovery: Mutex::new(HashMap::new()),
        }
    }

    /// The providers in config order, for the login page.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.providers
            .iter()
            .map(|(id, p)| {
                let (name, kind) = match p {
                    Provider::Oidc(c) => (
                        c.name.clone(),
                        match c.kind {
                            OidcKind::Generic => "oidc",
                            OidcKind::Slack => "slack",
                        },
                    ),
                    Provider::OAuth2(c) => (
                        c.name.clone(),
                        match c.kind {
                            OAuth2Kind::Discord => "discord",
                            OAuth2Kind::Github => "github",
                        },
                    ),
                };
                ProviderInfo {
                    id: id.clone(),
                    name,
                    kind,
                }
            })
            .collect()
    }

    /// Whether identities of `platform` can log in on the web through a configured
    /// provider (so they count as a way in when another identity is unlinked).
    pub fn can_log_in_with(&self, platform: &str) -> bool {
        self.providers
            .iter()
            .any(|(id, p)| platform_of(id, p) == platform)
    }

    fn provider(&self, id: &str) -> Result<&Provider, SsoError> {
        self.providers
            .iter()
            .find(|(pid, _)| pid == id)
            .map(|(_, p)| p)
            .ok_or_else(|| SsoError::UnknownProvider(id.to_string()))
    }

    /// Fails with [`SsoError::UnknownProvider`] for an id that is not configured.
    pub fn check_provider(&self, id: &str) -> Result<(), SsoError> {
        self.provider(id).map(|_| ())
    }

    fn http(&self) -> &http::ProviderHttp {
        self.http.get_or_init(|| http::ProviderHttp(http::client()))
    }

    fn redirect_url(&self, id: &str) -> String {
        format!("{}/api/auth/sso/{id}/callback", self.public_url)
    }

    /// Starts a login: the provider's authorization URL and the secrets to keep.
    pub async fn authorize(&self, id: &str) -> Result<Authorization, SsoError> {
        let redirect = self.redirect_url(id);
        match self.provider(id)? {
            Provider::Oidc(c) => {
                let meta = self.metadata(c).await?;
                oidc::authorize(&meta, c, &redirect)
            }
            Provider::OAuth2(c) => social::authorize(c, &redirect),
        }
    }

    /// Finishes a login: exchanges the code (with the PKCE verifier), verifies the ID
    /// token against the nonce (OIDC) or reads the user (OAuth2).
    pub async fn complete(
        &self,
        id: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<ExternalIdentity, SsoError> {
        let redirect = self.redirect_url(id);
        let provider = self.provider(id)?;
        let identity = match provider {
            Provider::Oidc(c) => {
                let meta = self.metadata(c).await?;
                oidc::complete(self.http(), &meta, c, &redirect, code, pkce_verifier, nonce).await?
            }
            Provider::OAuth2(c) => {
                social::complete(self.http(), c, &redirect, code, pkce_verifier).await?
            }
        };
        debug_assert_eq!(identity.platform, platform_of(id, provider));
        Ok(identity)
    }

    /// The issuer's discovery document, cached for [`DISCOVERY_TTL`].
    async fn metadata(
        &self,
        c: &OidcProviderConfig,
    ) -> Result<Arc<openidconnect::core::CoreProviderMetadata>, SsoError> {
        let mut cache = self.discovery.lock().await;
        if let Some((at, meta)) = cache.get(&c.id)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(meta.clone());
        }
        let meta = Arc::new(oidc::discover(self.http(), &c.issuer).await?);
        cache.insert(c.id.clone(), (Instant::now(), meta.clone()));
        Ok(meta)
    }
}

fn platform_of(id: &str, provider: &Provider) -> String {
    match provider {
        Provider::Oidc(c) => match c.kind {
            OidcKind::Generic => format!("oidc:{id}"),
            OidcKind::Slack => "slack".into(),
        },
        Provider::OAuth2(c) => match c.kind {
            OAuth2Kind::Discord => "discord".into(),
            OAuth2Kind::Github => "github".into(),
        },
    }
}
