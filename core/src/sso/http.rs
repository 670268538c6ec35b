//! The HTTP client the `oauth2` and `openidconnect` crates call, over the workspace's
//! reqwest (their own reqwest integration pins another reqwest major version).
//!
//! Redirects are never followed: a token endpoint that redirects could otherwise
//! forward the authorization code or client secret elsewhere (the crates' advice).

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest response body accepted from a provider (discovery documents, keys, tokens,
/// user records are a few kilobytes).
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("response body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// The client for provider calls: no redirects, bounded time. Implements the
/// `oauth2` crate's client trait with futures that are `Send`, as axum handlers need.
#[derive(Clone)]
pub struct ProviderHttp(pub reqwest::Client);

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(execute(&self.0, request))
    }
}

/// The reqwest client behind [`ProviderHttp`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .user_agent(concat!("chorus/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends one request built by the `oauth2`/`openidconnect` crates.
async fn execute(
    client: &reqwest::Client,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, HttpError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(HttpError::TooLarge);
    }
    let bytes = response.bytes().await?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge);
    }
    let mut out = http::Response::builder()
        .status(status)
        .body(bytes.to_vec())
        .map_err(|e| HttpError::Malformed(e.to_string()))?;
    *out.headers_mut() = headers;
    Ok(out)
}
