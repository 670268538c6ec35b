//! The plumbing every fake provider shares, so each fake holds only its wire format.
//!
//! [`Fake`] is one fake model API: it routes, checks and records every request, picks
//! what to answer from the markers in the last user turn (and from the history: a tool
//! result to answer, a continuation), fails `[rate-limit-once]` with a 429 the first
//! time, and replays the chosen fixture of `tests/fixtures/PROVIDER/`. What differs
//! between APIs is a [`Wire`]: which URL is the model call, why the real API would
//! refuse a request (key, URL, version, signature), how its history reads, which
//! markers it answers, and the few replies built in code.
//!
//! Below it: a [`Recorder`] of requests, [`FakeServer`] (an axum app served on
//! `127.0.0.1:0` that stops when dropped), [`paced_stream`] (a streaming reply sent
//! piece by piece, noting whether the client hung up before its end) and the SSE
//! framing ([`sse_data`], [`sse_event`]).

pub use crate::fake_http::{
    FakeServer, hung_up, paced_stream, sse_data, sse_event, streaming_response,
};
use crate::fixture::replay;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The requests a fake received, in order, with when each arrived; clones share the
/// same list.
#[derive(Debug)]
pub struct Recorder<T>(Arc<Mutex<Vec<(Instant, T)>>>);

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Recorder<T> {
    pub fn push(&self, request: T) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), request));
    }

    /// Every request received so far, in order.
    pub fn all(&self) -> Vec<T> {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().map(|(_, r)| r.clone()).collect()
    }

    /// When each request arrived, in order.
    pub fn times(&self) -> Vec<Instant> {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().map(|(t, _)| *t).collect()
    }
}

/// True the first time it is asked, false after: how a fake fails a request once
/// (a rate limit) and answers its retry.
#[derive(Clone, Debug, Default)]
pub struct FirstTime(Arc<AtomicBool>);

impl FirstTime {
    pub fn first(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }
}

/// What a fake did with a request: the fixture it replayed ([`Behaviour::fixture`]), a
/// reply its [`Wire`] built in code, or a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `reply`: the plain reply; also the answer to a tool result.
    Normal,
    /// `continuation`: the rest of the reply `[midstream-error]` broke off.
    Continuation,
    /// `tool_calls`: two parallel calls.
    ToolCalls,
    /// `content_filter`: text, then the provider's filter or safety stop.
    ContentFilter,
    /// `blocked_prompt`: the prompt refused by the provider's filter.
    BlockedPrompt,
    /// `midstream_error`: text, then an error event.
    MidstreamError,
    /// `failed`: text, then the Responses API's `response.failed`.
    Failed,
    /// `thinking`: reasoning, then the answer.
    Thinking,
    /// `reply_without_usage`: the plain reply without usage, as some servers send it.
    NoUsage,
    /// `rate_limit`: `[rate-limit-once]` the first time, a 429 asking for a one-second
    /// wait.
    RateLimitedOnce,
    /// `rate_limit_long_wait`: a 429 whose wait Chorus does not make.
    RateLimited,
    /// `throttled`: a 429 naming no wait.
    Throttled,
    /// `service_unavailable`: a 503.
    Unavailable,
    /// `unauthorized`: what the API answers a wrong key.
    Unauthorized,
    /// A long reply paced for a stop, built in code.
    Slow,
    /// The model is not one the API serves (built in code).
    ModelNotFound,
    /// An assistant prefill the fake cannot continue (built in code).
    BadPrefill,
    /// Refused as the real API would ([`RecordedRequest::rejection`] says why).
    Rejected,
}

impl Behaviour {
    /// The fixture replayed for this behaviour; `None` for what the wire builds in
    /// code or refuses.
    pub fn fixture(self) -> Option<&'static str> {
        Some(match self {
            Self::Normal => "reply",
            Self::Continuation => "continuation",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::BlockedPrompt => "blocked_prompt",
            Self::MidstreamError => "midstream_error",
            Self::Failed => "failed",
            Self::Thinking => "thinking",
            Self::NoUsage => "reply_without_usage",
            Self::RateLimitedOnce => "rate_limit",
            Self::RateLimited => "rate_limit_long_wait",
            Self::Throttled => "throttled",
            Self::Unavailable => "service_unavailable",
            Self::Unauthorized => "unauthorized",
            Self::Slow | Self::ModelNotFound | Self::BadPrefill | Self::Rejected => return None,
        })
    }
}

/// The markers every fake answers (after its own [`Wire::markers`]); the shared
/// provider checks send them.
pub const SHARED_MARKERS: &[(&str, Behaviour)] = &[
    ("[tool-calls]", Behaviour::ToolCalls),
    ("[content-filter]", Behaviour::ContentFilter),
    ("[midstream-error]", Behaviour::MidstreamError),
    ("[unauthorized]", Behaviour::Unauthorized),
];

/// The marker every fake answers with a 429 the first time and the plain reply after.
pub const RATE_LIMIT_ONCE: &str = "[rate-limit-once]";

/// One request as a fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// The path as sent (still percent-encoded).
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The JSON body (`null` when there was none).
    pub body: Value,
    /// `(role, text)` of every turn of the request's history, as the wire reads it.
    pub turns: Vec<(String, String)>,
    pub behaviour: Behaviour,
    /// Why the fake refused the request, if it did.
    pub rejection: Option<String>,
    /// Set when the client closed the connection before the reply was complete.
    hung_up: Arc<AtomicBool>,
}

impl RecordedRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// `(role, text)` of every turn of the request's history.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.turns.clone()
    }

    /// The text of the last `user` turn, where the markers are.
    pub fn last_user_text(&self) -> &str {
        self.turns
            .iter()
            .rev()
            .find(|(role, _)| role == "user")
            .map_or("", |(_, text)| text.as_str())
    }

    pub fn client_hung_up(&self) -> bool {
        hung_up(&self.hung_up)
    }

    /// The flag a reply built in code sets when the client hangs up (see
    /// [`paced_stream`]).
    pub fn hang_up_flag(&self) -> Arc<AtomicBool> {
        self.hung_up.clone()
    }
}

/// A request as it arrived, for a [`Wire`] to judge.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The body's bytes (what a signature covers).
    pub bytes: &'a [u8],
    /// The body as JSON.
    pub body: &'a Value,
}

impl Incoming<'_> {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What one model API's fake knows of its wire format; [`Fake`] does the rest.
pub trait Wire: Send + Sync + 'static {
    /// The fixtures it replays: `tests/fixtures/FIXTURES/`.
    const FIXTURES: &'static str;

    /// What the `base_url` to configure adds to `http://127.0.0.1:PORT` (`/v1` where the
    /// API's paths start below it).
    fn base_path(&self) -> &'static str {
        ""
    }

    /// Whether `method path` is the API's model call; any other request gets
    /// [`Wire::other`].
    fn is_call(&self, method: &Method, path: &str) -> bool;

    /// The answer to a request that is not a model call (a model list), unrecorded;
    /// `None`: 404.
    fn other(&self, _method: &Method, _path: &str) -> Option<Response> {
        None
    }

    /// The API's answer to a body that is not JSON.
    fn bad_json(&self, error: &serde_json::Error) -> Response {
        (StatusCode::BAD_REQUEST, format!("invalid JSON: {error}")).into_response()
    }

    /// Why the real API would refuse the request before reading what it asks (key,
    /// URL, version, signature, body shape), with its answer; recorded as
    /// [`Behaviour::Rejected`].
    fn refuse(&self, _request: &Incoming<'_>) -> Option<(String, Response)> {
        None
    }

    /// `(role, text)` of every turn of the body's history.
    fn turns(&self, body: &Value) -> Vec<(String, String)>;

    /// What the history decides before any marker: the answer to a tool result, a
    /// continuation, an unknown model.
    fn by_history(&self, body: &Value) -> Option<Behaviour>;

    /// The markers of the last user turn only this API answers, tried in order before
    /// [`SHARED_MARKERS`] and [`RATE_LIMIT_ONCE`].
    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[]
    }

    /// The reply to `behaviour` when it is built in code rather than replayed.
    fn build(&self, _behaviour: Behaviour, _request: &RecordedRequest) -> Option<Response> {
        None
    }

    /// How the API makes its one whole answer, for a request whose `stream` is not
    /// `true`, from the events of the stream it would have sent; `None` where this
    /// fake always streams.
    fn whole(&self) -> Option<fn(&str) -> Response> {
        None
    }
}

struct Shared<W> {
    wire: W,
    requests: Recorder<RecordedRequest>,
    rate_limited: FirstTime,
}

/// A running fake model API speaking `W`. Stops when dropped.
pub struct Fake<W: Wire> {
    server: FakeServer,
    shared: Arc<Shared<W>>,
}

impl<W: Wire> Fake<W> {
    /// Serves `wire` on `127.0.0.1:0`.
    pub async fn serve(wire: W) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            wire,
            requests: Recorder::default(),
            rate_limited: FirstTime::default(),
        });
        let app = Router::new()
            .fallback(handle::<W>)
            .with_state(shared.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The `base_url` to configure: `http://127.0.0.1:PORT` and the wire's
    /// [`Wire::base_path`].
    pub fn base_url(&self) -> String {
        self.url(self.wire().base_path())
    }

    pub fn wire(&self) -> &W {
        &self.shared.wire
    }

    /// Every model call received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// When each model call arrived, in order.
    pub fn request_times(&self) -> Vec<Instant> {
        self.shared.requests.times()
    }
}

impl<W: Wire + Default> Fake<W> {
    /// Serves the wire's default.
    pub async fn start() -> anyhow::Result<Self> {
        Self::serve(W::default()).await
    }
}

impl<W: Wire> Shared<W> {
    fn choose(&self, body: &Value, last_user: &str) -> Behaviour {
        if let Some(b) = self.wire.by_history(body) {
            return b;
        }
        if let Some((_, b)) = self
            .wire
            .markers()
            .iter()
            .chain(SHARED_MARKERS)
            .find(|(marker, _)| last_user.contains(marker))
        {
            return *b;
        }
        if last_user.contains(RATE_LIMIT_ONCE) && self.rate_limited.first() {
            return Behaviour::RateLimitedOnce;
        }
        Behaviour::Normal
    }
}

async fn handle<W: Wire>(
    State(shared): State<Arc<Shared<W>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let wire = &shared.wire;
    if !wire.is_call(&method, uri.path()) {
        return wire
            .other(&method, uri.path())
            .unwrap_or_else(|| StatusCode::NOT_FOUND.into_response());
    }
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return wire.bad_json(&e),
        }
    };
    let refusal = wire.refuse(&Incoming {
        method: &method,
        uri: &uri,
        headers: &headers,
        bytes: &bytes,
        body: &body,
    });
    let turns = wire.turns(&body);
    let mut request = RecordedRequest {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
        turns,
        behaviour: Behaviour::Rejected,
        rejection: refusal.as_ref().map(|(why, _)| why.clone()),
        hung_up: Arc::new(AtomicBool::new(false)),
    };
    if refusal.is_none() {
        request.behaviour = shared.choose(&request.body, request.last_user_text());
    }
    shared.requests.push(request.clone());
    if let Some((_, response)) = refusal {
        return response;
    }
    let response = match wire.build(request.behaviour, &request) {
        Some(response) => response,
        None => match request.behaviour.fixture() {
            Some(name) => replay(W::FIXTURES, name, Some(request.hang_up_flag())),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("fake {}: no reply for {:?}", W::FIXTURES, request.behaviour),
            )
                .into_response(),
        },
    };
    let streaming = request.body["stream"] == true;
    match wire.whole() {
        Some(fold)
            if !streaming && response.status().is_success() && is_event_stream(&response) =>
        {
            // Read at the stream's own pace: the whole answer comes when it would have
            // ended, and a client that hangs up meanwhile is noted as for a stream.
            match axum::body::to_bytes(response.into_body(), usize::MAX).await {
                Ok(sse) => fold(&String::from_utf8_lossy(&sse)),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        _ => response,
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"))
}

/// `(role, content)` of every message of a `messages` array whose contents are strings.
pub fn roles_and_contents(messages: &Value) -> Vec<(String, String)> {
    messages
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or_default().to_string(),
                        m["content"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, for the `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
