//! [`OidcProvider`]: a real third-party OpenID Connect provider, `oidc-provider-mock`
//! from PyPI (installed by `scripts/provision/40-oidc.sh`), run as a child process on
//! a free loopback port, and [`OidcInterceptor`], a tiny HTTP proxy in front of it that
//! tampers with what Chorus reads (the discovery document's issuer, the timing of the
//! token response) so the failure cases hit Chorus's verification with tokens the
//! provider really signed.
//!
//! The provider's login form is driven as its docs describe: `GET` the authorization
//! URL, then `POST` the same URL with the form field `sub` (the user to log in as).

use crate::fake_server::FakeServer;
use crate::server::free_port;
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The Python interpreter of the test tools' virtual environment.
pub fn test_python() -> PathBuf {
    std::env::var_os("CHORUS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/chorus-test-services/venv/bin/python"))
}

/// One `oidc-provider-mock` process; killed when dropped.
pub struct OidcProvider {
    port: u16,
    child: Child,
    dir: TempDir,
}

impl OidcProvider {
    /// Starts the provider. `token_max_age_secs`: lifetime of its ID and access tokens.
    /// `users`: predefined users as JSON claims objects with a `sub`.
    pub async fn start(token_max_age_secs: u64, users: &[serde_json::Value]) -> Result<Self> {
        let python = test_python();
        if !python.is_file() {
            bail!(
                "the test tools' Python is missing at {} (run scripts/test, whose \
                 scripts/provision/40-oidc.sh installs oidc-provider-mock, or set CHORUS_TEST_PYTHON)",
                python.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("chorus-oidc-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("provider.log"))?;
        let port = free_port()?;
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "oidc_provider_mock", "--host", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--token-max-age")
            .arg(token_max_age_secs.to_string())
            .env("NO_COLOR", "1");
        for user in users {
            cmd.arg("--user-claims").arg(user.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let mut provider = Self { port, child, dir };
        provider.wait_ready().await?;
        Ok(provider)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "oidc-provider-mock exited with {status} (is it installed? scripts/provision/40-oidc.sh \
                     installs it); its log:\n{}",
                    self.log()
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "oidc-provider-mock did not answer {url} within 30 s; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The issuer URL (`http://127.0.0.1:PORT`, what the provider puts in `iss`).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How an [`OidcInterceptor`] tampers with the provider's answers to Chorus.
#[derive(Clone, Debug)]
pub enum Tamper {
    /// Serves the discovery document with `issuer` set to the interceptor's own URL,
    /// every endpoint still the provider's: the ID tokens then carry an issuer other
    /// than the one Chorus was configured with and discovered.
    IssuerIsProxy,
    /// Holds the token endpoint's response for this long before passing it on, so the
    /// (short-lived) ID token has expired when Chorus verifies it.
    DelayTokenResponse(Duration),
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    tamper: Tamper,
    http: reqwest::Client,
}

/// A proxy in front of an [`OidcProvider`]; configure Chorus's issuer as its URL.
pub struct OidcInterceptor {
    server: FakeServer,
}

impl OidcInterceptor {
    pub async fn start(upstream: &str, tamper: Tamper) -> Result<Self> {
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            tamper,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        let app = Router::new().fallback(forward).with_state(state);
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server })
    }

    pub fn url(&self) -> String {
        self.server.url("")
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    match forward_inner(state, request).await {
        Ok(r) => r,
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}

async fn forward_inner(state: ProxyState, request: Request) -> Result<Response> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let mut headers = request.headers().clone();
    // The interceptor's own URL, as its client addressed it.
    let own_url = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok().map(|h| format!("http://{h}")))
        .unwrap_or_default();
    if matches!(state.tamper, Tamper::IssuerIsProxy) {
        // The provider then names its own URL in every endpoint and in `iss`.
        headers.remove(axum::http::header::HOST);
    }
    // Otherwise the provider sees the interceptor's host: it names the interceptor as
    // issuer and in every endpoint, so all traffic passes through here.
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await?;
    let upstream = state
        .http
        .request(method, format!("{}{path}", state.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let status = upstream.status();
    let upstream_headers = upstream.headers().clone();
    let mut bytes = upstream.bytes().await?.to_vec();
    match &state.tamper {
        Tamper::IssuerIsProxy if path.starts_with("/.well-known/openid-configuration") => {
            let mut doc: serde_json::Value = serde_json::from_slice(&bytes)?;
            doc["issuer"] = own_url.into();
            bytes = serde_json::to_vec(&doc)?;
        }
        Tamper::DelayTokenResponse(delay) if path.starts_with("/oauth2/token") => {
            tokio::time::sleep(*delay).await;
        }
        _ => {}
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &upstream_headers {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(bytes))?)
}
