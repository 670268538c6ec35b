//! OpenID Connect with the `openidconnect` crate: discovery, the authorization URL
//! (state, nonce, PKCE S256), the code exchange and the ID token's verification
//! (signature against the issuer's keys, issuer, audience, expiry, nonce).

use super::config::{OidcKind, OidcProviderConfig};
use super::http::ProviderHttp;
use super::rules::{account_name_hint, check_email_domain, claim_has_value};
use super::{Authorization, ExternalIdentity, SsoError};
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

/// The Slack claim holding the user id the Slack bot sees.
const SLACK_USER_ID_CLAIM: &str = "https://slack.com/user_id";

pub(super) async fn discover(
    http: &ProviderHttp,
    issuer: &str,
) -> Result<CoreProviderMetadata, SsoError> {
    let issuer = IssuerUrl::new(issuer.to_string())
        .map_err(|e| SsoError::Discovery(format!("issuer URL {issuer:?}: {e}")))?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| SsoError::Discovery(error_chain(&e)))
}

fn redirect(url: &str) -> Result<RedirectUrl, SsoError> {
    RedirectUrl::new(url.to_string())
        .map_err(|e| SsoError::Internal(format!("redirect URL {url:?}: {e}")))
}

pub(super) fn authorize(
    meta: &CoreProviderMetadata,
    c: &OidcProviderConfig,
    redirect_url: &str,
) -> Result<Authorization, SsoError> {
    let client = CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new(c.client_id.clone()),
        c.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string())),
    )
    .set_redirect_uri(redirect(redirect_url)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in c.scopes.iter().filter(|s| s.as_str() != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    Ok(Authorization {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

pub(super) async fn complete(
    http: &ProviderHttp,
    meta: &CoreProviderMetadata,
    c: &OidcProviderConfig,
    redirect_url: &str,
    code: &str,
    pkce_verifier: &str,
    nonce: &str,
) -> Result<ExternalIdentity, SsoError> {
    let client = CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new(c.client_id.clone()),
        c.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string())),
    )
    .set_redirect_uri(redirect(redirect_url)?);
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| SsoError::Discovery(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
        .request_async(http)
        .await
        .map_err(|e| SsoError::TokenExchange(error_chain(&e)))?;
    let id_token = token
        .id_token()
        .ok_or_else(|| SsoError::IdToken("the token response has no id_token".into()))?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| SsoError::IdToken(error_chain(&e)))?;
    // The signature is verified: the payload's other claims (Slack's user id, groups)
    // can be read from it as plain JSON.
    let raw = payload(&id_token.to_string())?;

    let email = claims.email().map(|e| e.as_str().to_string());
    check_email_domain(
        email.as_deref(),
        claims.email_verified(),
        &c.allowed_email_domains,
    )?;
    let subject = claims.subject().as_str().to_string();
    let (platform, external_id) = match c.kind {
        OidcKind::Generic => (format!("oidc:{}", c.id), subject),
        OidcKind::Slack => {
            let user_id = raw
                .get(SLACK_USER_ID_CLAIM)
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    SsoError::IdToken(format!("the ID token has no {SLACK_USER_ID_CLAIM} claim"))
                })?;
            ("slack".to_string(), user_id.to_string())
        }
    };
    let username = claims.preferred_username().map(|u| u.as_str().to_string());
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string());
    let label = email
        .clone()
        .or_else(|| username.clone())
        .or_else(|| name.clone())
        .unwrap_or_else(|| external_id.clone());
    let hint = account_name_hint(&[username.as_deref(), email.as_deref(), name.as_deref()]);
    let admin = match (&c.admin_claim, &c.admin_value) {
        (Some(claim), Some(value)) => Some(claim_has_value(&raw, claim, value)),
        _ => None,
    };
    Ok(ExternalIdentity {
        platform,
        external_id,
        label,
        name_hints: vec![hint],
        admin,
    })
}

/// The JSON payload of a compact JWS (called only after its signature was verified).
fn payload(jwt: &str) -> Result<serde_json::Value, SsoError> {
    let part = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| SsoError::IdToken("malformed ID token".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| SsoError::IdToken(format!("malformed ID token payload: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| SsoError::IdToken(format!("malformed ID token payload: {e}")))
}

/// An error and its sources in one line (the crates' top-level messages are terse).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = err.source();
    }
    text
}
