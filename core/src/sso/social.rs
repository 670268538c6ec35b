//! OAuth2 logins that are not OpenID Connect, with the `oauth2` crate: Discord
//! (`GET /users/@me`) and GitHub (`GET /user` and `GET /user/emails`). The identity's
//! external id is the platform's user id, the same one its bot sees.

use super::config::{OAuth2Kind, OAuth2ProviderConfig};
use super::http::ProviderHttp;
use super::oidc::error_chain;
use super::rules::{account_name_hint, check_email_domain};
use super::{Authorization, ExternalIdentity, SsoError};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

fn url_error(what: &str, e: impl std::fmt::Display) -> SsoError {
    SsoError::Internal(format!("{what}: {e}"))
}

/// Both use PKCE (S256): GitHub documents it for OAuth apps, and Discord's
/// authorization server accepts `code_challenge` and checks `code_verifier`. It binds
/// the code to the browser that started the login, so a code stolen on its way back
/// (a leaked redirect, a log) cannot be exchanged by anyone else.
fn uses_pkce(kind: OAuth2Kind) -> bool {
    matches!(kind, OAuth2Kind::Github | OAuth2Kind::Discord)
}

macro_rules! oauth_client {
    ($c:expr, $redirect:expr) => {{
        let c = $c;
        BasicClient::new(ClientId::new(c.client_id.clone()))
            .set_client_secret(ClientSecret::new(c.client_secret.expose().to_string()))
            .set_auth_uri(
                AuthUrl::new(c.effective_authorize_url())
                    .map_err(|e| url_error("authorize_url", e))?,
            )
            .set_token_uri(
                TokenUrl::new(c.effective_token_url()).map_err(|e| url_error("token_url", e))?,
            )
            .set_redirect_uri(
                RedirectUrl::new($redirect.to_string())
                    .map_err(|e| url_error("redirect URL", e))?,
            )
            // GitHub documents the client credentials as form parameters; Discord
            // accepts HTTP Basic.
            .set_auth_type(match c.kind {
                OAuth2Kind::Github => AuthType::RequestBody,
                OAuth2Kind::Discord => AuthType::BasicAuth,
            })
    }};
}

pub(super) fn authorize(
    c: &OAuth2ProviderConfig,
    redirect_url: &str,
) -> Result<Authorization, SsoError> {
    let client = oauth_client!(c, redirect_url);
    let mut request = client.authorize_url(CsrfToken::new_random);
    for scope in c.effective_scopes() {
        request = request.add_scope(Scope::new(scope));
    }
    let mut verifier_secret = String::new();
    if uses_pkce(c.kind) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        verifier_secret = verifier.secret().clone();
    }
    let (url, state) = request.url();
    Ok(Authorization {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: String::new(),
        pkce_verifier: verifier_secret,
    })
}

pub(super) async fn complete(
    http: &ProviderHttp,
    c: &OAuth2ProviderConfig,
    redirect_url: &str,
    code: &str,
    pkce_verifier: &str,
) -> Result<ExternalIdentity, SsoError> {
    let client = oauth_client!(c, redirect_url);
    let mut request = client.exchange_code(AuthorizationCode::new(code.to_string()));
    if uses_pkce(c.kind) && !pkce_verifier.is_empty() {
        request = request.set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
    }
    let token = request
        .request_async(http)
        .await
        .map_err(|e| SsoError::TokenExchange(error_chain(&e)))?;
    let access = token.access_token().secret();
    let api = c.effective_api_url();
    match c.kind {
        OAuth2Kind::Discord => discord_user(&http.0, &api, access, c).await,
        OAuth2Kind::Github => github_user(&http.0, &api, access, c).await,
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<T, SsoError> {
    let response = http
        .get(url)
        .bearer_auth(access_token)
        .header("Accept", "application/json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| SsoError::UserInfo(format!("GET {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(SsoError::UserInfo(format!("GET {url} answered {status}")));
    }
    response
        .json()
        .await
        .map_err(|e| SsoError::UserInfo(format!("GET {url}: {}", error_chain(&e))))
}

/// `GET /users/@me` (Discord's documented user object, the fields used here).
#[derive(Deserialize)]
struct DiscordUser {
    id: String,
    username: String,
    #[serde(default)]
    global_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    verified: Option<bool>,
}

async fn discord_user(
    http: &reqwest::Client,
    api: &str,
    access_token: &str,
    c: &OAuth2ProviderConfig,
) -> Result<ExternalIdentity, SsoError> {
    let user: DiscordUser = get_json(http, &format!("{api}/users/@me"), access_token).await?;
    if user.id.is_empty() || !user.id.chars().all(|ch| ch.is_ascii_digit()) {
        return Err(SsoError::UserInfo(format!(
            "Discord returned a malformed user id {:?}",
            user.id
        )));
    }
    // Discord's `verified` is about the email address.
    check_email_domain(
        user.email.as_deref(),
        user.verified.or(Some(false)),
        &c.allowed_email_domains,
    )?;
    let hint = account_name_hint(&[Some(&user.username), user.global_name.as_deref()]);
    Ok(ExternalIdentity {
        platform: "discord".into(),
        external_id: user.id,
        label: user.username,
        name_hints: vec![hint],
        admin: None,
    })
}

/// `GET /user` (GitHub's documented user object, the fields used here).
#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    #[serde(default)]
    name: Option<String>,
}

/// One entry of `GET /user/emails`.
#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

async fn github_user(
    http: &reqwest::Client,
    api: &str,
    access_token: &str,
    c: &OAuth2ProviderConfig,
) -> Result<ExternalIdentity, SsoError> {
    let user: GithubUser = get_json(http, &format!("{api}/user"), access_token).await?;
    if !c.allowed_email_domains.is_empty() {
        // Any verified address of an allowed domain admits the user.
        let emails: Vec<GithubEmail> =
            get_json(http, &format!("{api}/user/emails"), access_token).await?;
        let admitted = emails.iter().filter(|e| e.verified).any(|e| {
            check_email_domain(Some(&e.email), Some(true), &c.allowed_email_domains).is_ok()
        });
        if !admitted {
            let primary = emails.iter().find(|e| e.primary);
            check_email_domain(
                primary.map(|e| e.email.as_str()),
                primary.map(|e| e.verified),
                &c.allowed_email_domains,
            )?;
            return Err(SsoError::EmailNotAllowed(
                "no verified GitHub email address of an allowed domain".into(),
            ));
        }
    }
    let hint = account_name_hint(&[Some(&user.login), user.name.as_deref()]);
    Ok(ExternalIdentity {
        platform: "github".into(),
        external_id: user.id.to_string(),
        label: user.login,
        name_hints: vec![hint],
        admin: None,
    })
}
