//! The REST calls that stream a reply — post, edit, typing, a DM channel — and the
//! interactions' answers, made directly so that a 429 reaches the renderer (or the
//! answer's retry) with its wait. serenity's own client,
//! with its rate limiter off (needed for the test override), drops the body of a 429
//! (`retry_after` in a body without `code` does not decode), so these few calls read
//! `retry_after` and the rate-limit headers themselves.

use chorus_core::chat::SinkError;
use chorus_model::secret::Secret;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// How long to wait after a 429 that names no time.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Each call's own bound: a hung connection must not stall a renderer forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Discord's REST API v10 with the bot's token.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl Rest {
    /// `api_url` is the origin (`https://discord.com`, or a test's fake).
    pub fn new(api_url: &str, token: Secret) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .user_agent("DiscordBot (https://github.com/chorus, 0.1) Chorus")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: format!("{}/api/v10", api_url.trim_end_matches('/')),
            token,
        })
    }

    /// One call; the JSON answer (`Null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SinkError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", format!("Bot {}", self.token.expose()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SinkError::Failed(format!("discord: {method} {path}: {e}")))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SinkError::RateLimited {
                retry_after: retry_after(response).await,
            });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(SinkError::Failed(format!(
                "discord: {method} {path}: {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response
            .json()
            .await
            .map_err(|e| SinkError::Failed(format!("discord: {method} {path}: bad JSON: {e}")))
    }
}

/// The wait a 429 asks for: the body's `retry_after` (seconds, fractional), else the
/// `Retry-After` header, else `X-RateLimit-Reset-After`, else a second.
async fn retry_after(response: Response) -> Duration {
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let body: Option<Value> = response.json().await.ok();
    let seconds = body
        .as_ref()
        .and_then(|b| b.get("retry_after"))
        .and_then(Value::as_f64)
        .or_else(|| header("retry-after"))
        .or_else(|| header("x-ratelimit-reset-after"));
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s.min(3600.0)),
        _ => DEFAULT_RETRY_AFTER,
    }
}
