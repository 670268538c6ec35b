//! [`SsoBrowser`]: a browser as far as single sign-on needs one: a cookie jar shared
//! by every site it visits, and redirects followed one hop at a time so a test can
//! look at (and tamper with) each URL of the flow.

use anyhow::{Context, Result, bail};
use reqwest::cookie::Jar;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub struct SsoBrowser {
    base: String,
    http: reqwest::Client,
}

impl SsoBrowser {
    /// A browser with an empty cookie jar, pointed at the Chorus server `base`.
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::new(Jar::default()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The underlying client (cookies kept, redirects not followed).
    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, url: &str) -> Result<Response> {
        Ok(self.http.get(url).send().await?)
    }

    /// GET of a Chorus API path, as JSON with its status.
    pub async fn api_get(&self, path: &str) -> Result<(StatusCode, Value)> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn api_delete(&self, path: &str) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .delete(self.url(path))
            .header("Origin", &self.base)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn api_post(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .post(self.url(path))
            .header("Origin", &self.base)
            .json(body)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /api/auth/sso/{provider}/start`, as a click on the chat page's button (a
    /// same-origin navigation): the provider URL it redirects to.
    pub async fn start(&self, provider: &str) -> Result<url::Url> {
        let r = self
            .http
            .get(self.url(&format!("/api/auth/sso/{provider}/start")))
            .header("Sec-Fetch-Site", "same-origin")
            .send()
            .await?;
        redirect_target(r, "the SSO start").await
    }

    /// GETs `url` and expects a redirect; returns where to.
    pub async fn follow(&self, url: &str) -> Result<url::Url> {
        redirect_target(self.get(url).await?, url).await
    }

    /// Logs in at `oidc-provider-mock`'s authorization page as `sub`: loads the form,
    /// then posts it back to the same URL (the provider's documented interaction).
    /// Returns the redirect back to the client (Chorus's callback).
    pub async fn provider_login(&self, authorize: &url::Url, sub: &str) -> Result<url::Url> {
        let form = self.get(authorize.as_str()).await?;
        let status = form.status();
        let html = form.text().await.unwrap_or_default();
        if status != StatusCode::OK || !html.contains("name=\"sub\"") {
            bail!("the provider's authorization page answered {status}: {html}");
        }
        let r = self
            .http
            .post(authorize.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("sub", sub)
                    .finish(),
            )
            .send()
            .await?;
        redirect_target(r, "the provider's authorization form").await
    }

    /// A complete OIDC login at `oidc-provider-mock` as `sub`; the callback must
    /// redirect to `/`.
    pub async fn oidc_login(&self, provider: &str, sub: &str) -> Result<()> {
        let authorize = self.start(provider).await?;
        let callback = self.provider_login(&authorize, sub).await?;
        let home = self.follow(callback.as_str()).await?;
        if home.path() != "/" {
            bail!("the callback redirected to {home}, not to the chat client");
        }
        Ok(())
    }

    /// The JSON error of a request that must fail with `status`.
    pub async fn expect_error(&self, url: &str, status: StatusCode) -> Result<Value> {
        let r = self.get(url).await?;
        let got = r.status();
        let set_cookie: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let body: Value = r.json().await.context("the error is not JSON")?;
        if got != status {
            bail!("expected {status}, got {got}: {body}");
        }
        if set_cookie.iter().any(|c| c.starts_with("chorus_session=")) {
            bail!("a failed callback set a session cookie: {set_cookie:?}");
        }
        Ok(body)
    }
}

async fn redirect_target(r: Response, what: &str) -> Result<url::Url> {
    let status = r.status();
    if status != StatusCode::FOUND && status != StatusCode::SEE_OTHER {
        let body = r.text().await.unwrap_or_default();
        bail!("{what} answered {status} instead of a redirect: {body}");
    }
    let base = r.url().clone();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("a redirect without Location")?;
    Ok(base.join(location)?)
}

/// `url` with query parameter `name` replaced by `value`.
pub fn with_query(url: &url::Url, name: &str, value: &str) -> url::Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            if k == name {
                (k.into_owned(), value.to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}
