//! The Events API: Slack's HTTP requests to `/slack/events`, `/slack/interactions`
//! and `/slack/commands`, mounted on Chorus's own listener. Every request must carry
//! a valid `x-slack-signature` (`v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the
//! signing secret) and a timestamp within five minutes; anything else is refused
//! with 401 and nothing in it is looked at. `url_verification` is answered with its
//! challenge. A retried delivery (`x-slack-retry-num`) of an event already handled
//! is acknowledged and not answered again.

use crate::bot::Bot;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chorus_model::secret::Secret;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::sync::{Arc, RwLock};

/// The Events API's endpoint: its router exists from the server's start; the bot is
/// installed once the surface is up (until then requests get 503, and Slack retries).
#[derive(Clone)]
pub struct EventsEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Option<SlackEventSignatureVerifier>,
    bot: RwLock<Option<Arc<Bot>>>,
}

impl EventsEndpoint {
    /// An endpoint verifying with `signing_secret` (none: every request is refused).
    pub fn new(signing_secret: Option<&Secret>) -> Self {
        let verifier = signing_secret
            .filter(|s| !s.is_empty())
            .map(|s| SlackEventSignatureVerifier::new(&s.expose().to_string().into()));
        Self {
            inner: Arc::new(Inner {
                verifier,
                bot: RwLock::new(None),
            }),
        }
    }

    /// The routes Slack's requests come to.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/slack/events", post(events))
            .route("/slack/interactions", post(interactions))
            .route("/slack/commands", post(commands))
            .with_state(self.clone())
    }

    pub(crate) fn install(&self, bot: Option<Arc<Bot>>) {
        *self.inner.bot.write().unwrap_or_else(|e| e.into_inner()) = bot;
    }

    pub(crate) fn bot(&self) -> Option<Arc<Bot>> {
        self.inner
            .bot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The body as text when the request is Slack's: a valid signature over it and a
    /// fresh timestamp. Otherwise [`Refused`] (a 401).
    fn verify<'b>(&self, headers: &HeaderMap, body: &'b Bytes) -> Result<&'b str, Refused> {
        let refuse = |why: &str| {
            tracing::warn!(why, "slack: refusing an Events API request");
            Refused
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(verifier) = &self.inner.verifier else {
            return Err(refuse("no signing secret configured"));
        };
        let (Some(signature), Some(timestamp)) = (
            header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
            header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
        ) else {
            return Err(refuse("signature or timestamp header missing"));
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(refuse("body is not UTF-8"));
        };
        // Checked here first, without overflow: slack-morphism's own check computes
        // `now - ts`, which overflows (a panic in a debug build) for a timestamp near
        // `i64::MIN` (fuzz_tests.rs keeps the case).
        if !fresh(timestamp) {
            return Err(refuse("timestamp not within five minutes"));
        }
        if let Err(e) = verifier.verify(signature, text, timestamp) {
            tracing::debug!(error = %e, "slack: signature check failed");
            return Err(refuse("bad signature or stale timestamp"));
        }
        Ok(text)
    }
}

/// How far a request's timestamp may be from now, in seconds (Slack's five minutes).
const MAX_TIMESTAMP_AGE_SECS: i64 = 300;

/// Whether `timestamp` is whole Unix seconds within [`MAX_TIMESTAMP_AGE_SECS`] of now.
fn fresh(timestamp: &str) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    timestamp
        .parse::<i64>()
        .ok()
        .and_then(|ts| now.checked_sub(ts))
        .and_then(i64::checked_abs)
        .is_some_and(|age| age <= MAX_TIMESTAMP_AGE_SECS)
}

/// A request that is not Slack's: 401, and nothing in it is read.
struct Refused;

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::UNAUTHORIZED, "invalid Slack request signature").into_response()
    }
}

/// The surface is not up yet: 503 (Slack retries).
struct Starting;

impl IntoResponse for Starting {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the Slack surface is starting",
        )
            .into_response()
    }
}

/// The bot, or [`Starting`] while the surface is not up.
fn ready(endpoint: &EventsEndpoint) -> Result<Arc<Bot>, Starting> {
    endpoint.bot().ok_or(Starting)
}

async fn events(
    State(endpoint): State<EventsEndpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = match endpoint.verify(&headers, &body) {
        Ok(text) => text,
        Err(refused) => return refused.into_response(),
    };
    let event: SlackPushEvent = match serde_json::from_str(text) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "slack: an event that does not parse");
            return (StatusCode::BAD_REQUEST, "not a Slack event").into_response();
        }
    };
    match event {
        SlackPushEvent::UrlVerification(v) => {
            axum::Json(serde_json::json!({ "challenge": v.challenge })).into_response()
        }
        SlackPushEvent::EventCallback(callback) => {
            if let Some(retry) = headers.get("x-slack-retry-num") {
                tracing::debug!(retry = ?retry, reason = ?headers.get("x-slack-retry-reason"), event = %callback.event_id, "slack: a retried delivery");
            }
            let bot = match ready(&endpoint) {
                Ok(bot) => bot,
                Err(unavailable) => return unavailable.into_response(),
            };
            bot.on_push(callback);
            StatusCode::OK.into_response()
        }
        SlackPushEvent::AppRateLimited(limited) => {
            tracing::warn!(team = %limited.team_id, "slack: Slack is dropping this app's events (app_rate_limited)");
            StatusCode::OK.into_response()
        }
    }
}

/// A form body's one field `name`.
fn form_field(text: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(text.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn interactions(
    State(endpoint): State<EventsEndpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = match endpoint.verify(&headers, &body) {
        Ok(text) => text,
        Err(refused) => return refused.into_response(),
    };
    let event: Option<SlackInteractionEvent> =
        form_field(text, "payload").and_then(|p| serde_json::from_str(&p).ok());
    let Some(event) = event else {
        return (StatusCode::BAD_REQUEST, "not a Slack interaction").into_response();
    };
    match ready(&endpoint) {
        Ok(bot) => {
            bot.on_interaction(event);
            StatusCode::OK.into_response()
        }
        Err(unavailable) => unavailable.into_response(),
    }
}

async fn commands(
    State(endpoint): State<EventsEndpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = match endpoint.verify(&headers, &body) {
        Ok(text) => text,
        Err(refused) => return refused.into_response(),
    };
    let pairs: serde_json::Map<String, serde_json::Value> =
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    let Ok(command) = serde_json::from_value::<SlackCommandEvent>(pairs.into()) else {
        return (StatusCode::BAD_REQUEST, "not a Slack slash command").into_response();
    };
    match ready(&endpoint) {
        Ok(bot) => {
            bot.on_command(command);
            // An empty 200: the answer comes as an ephemeral message.
            StatusCode::OK.into_response()
        }
        Err(unavailable) => unavailable.into_response(),
    }
}
