//! [`ApiClient`]: the JSON API as a browser or script uses it (session cookie or API
//! key), and [`RunEvents`], a reader of a run's server-sent events parsed with
//! `eventsource-stream`, that can stop after any number of events and resume with
//! `Last-Event-ID` or `?after=`.

use anyhow::{Context, Result, anyhow, bail};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::cookie::Jar;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long any single API call or SSE event may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one server. Clones share the session.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    jar: Arc<Jar>,
    bearer: Option<String>,
}

/// What `POST /api/conversations/{id}/messages` returns.
#[derive(Clone, Debug, Deserialize)]
pub struct SentMessage {
    pub conversation_id: String,
    pub message_id: String,
    pub assistant_message_id: String,
    pub run_id: String,
}

/// Where a reader of a run's events starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// From the first event.
    Start,
    /// After this seq, sent as the `Last-Event-ID` header (what a browser does).
    LastEventId(u64),
    /// After this seq, sent as `?after=SEQ`.
    After(u64),
}

impl ApiClient {
    /// A client of the server at `base` (`http://127.0.0.1:PORT`) with an empty
    /// cookie jar.
    pub fn new(base: &str) -> Self {
        Self::with_jar(base, Arc::new(Jar::default()), None)
    }

    fn with_jar(base: &str, jar: Arc<Jar>, bearer: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            jar,
            bearer,
        }
    }

    /// A client of another server (another instance) carrying this client's cookies
    /// to it: the same browser session presented to a different instance.
    pub fn same_session_on(&self, base: &str) -> Self {
        // The jar is keyed by host, so the session cookie must be copied to the
        // other instance's URL explicitly.
        use reqwest::cookie::CookieStore;
        let jar = Arc::new(Jar::default());
        let (Ok(from), Ok(to)) = (self.base.parse::<url::Url>(), base.parse::<url::Url>()) else {
            return Self::new(base);
        };
        if let Some(cookies) = self.jar.cookies(&from)
            && let Ok(cookies) = cookies.to_str()
        {
            for cookie in cookies.split(';') {
                jar.add_cookie_str(cookie.trim(), &to);
            }
        }
        Self::with_jar(base, jar, self.bearer.clone())
    }

    /// A client that authenticates with `Authorization: Bearer KEY` and no cookies.
    pub fn with_api_key(base: &str, key: &str) -> Self {
        Self::with_jar(base, Arc::new(Jar::default()), Some(key.to_string()))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`), authenticated if the client is.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(CALL_TIMEOUT);
        match &self.bearer {
            Some(key) => req = req.bearer_auth(key),
            // As the chat client in a browser: its requests carry the page's origin,
            // which the server checks on every change a session cookie makes.
            None => req = req.header("Origin", &self.base),
        }
        req
    }

    /// A request with this client's cookies as a page of `origin` sends it (another
    /// site's form posting to this server, in the CSRF tests).
    pub fn request_from(&self, origin: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .timeout(CALL_TIMEOUT)
            .header("Origin", origin)
    }

    /// A GET, retried once when a pooled connection turns out to be closed: the server
    /// rightly closes a connection after refusing a body it did not read (413), and a
    /// GET is safe to repeat, as every HTTP client does.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response> {
        match self.request(Method::GET, path).send().await {
            Err(e) if e.is_request() || e.is_connect() => {
                Ok(self.request(Method::GET, path).send().await?)
            }
            other => Ok(other?),
        }
    }

    /// `POST /api/auth/login`; the session cookie lands in the jar.
    pub async fn login(&self, name: &str, password: &str) -> Result<Value> {
        let resp = self
            .request(Method::POST, "/api/auth/login")
            .json(&json!({"name": name, "password": password}))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, "log in").await
    }

    pub async fn me(&self) -> Result<Value> {
        let resp = self.get("/api/me").await?;
        expect_json(resp, StatusCode::OK, "GET /api/me").await
    }

    /// Creates a conversation (on the default model unless `model` is given); returns its id.
    pub async fn create_conversation(&self, model: Option<&str>) -> Result<String> {
        self.create_conversation_with(model, None).await
    }

    /// [`Self::create_conversation`] with a system prompt, if given.
    pub async fn create_conversation_with(
        &self,
        model: Option<&str>,
        system_prompt: Option<&str>,
    ) -> Result<String> {
        let mut body = json!({"title": "e2e"});
        if let Some(m) = model {
            body["model"] = json!(m);
        }
        if let Some(prompt) = system_prompt {
            body["system_prompt"] = json!(prompt);
        }
        let resp = self
            .request(Method::POST, "/api/conversations")
            .json(&body)
            .send()
            .await?;
        let conv = expect_json(resp, StatusCode::CREATED, "create a conversation").await?;
        str_field(&conv, "id")
    }

    pub async fn conversation(&self, id: &str) -> Result<Value> {
        let resp = self.get(&format!("/api/conversations/{id}")).await?;
        expect_json(resp, StatusCode::OK, "GET the conversation").await
    }

    /// The messages of a conversation, as stored.
    pub async fn messages(&self, conversation: &str) -> Result<Vec<Value>> {
        let conv = self.conversation(conversation).await?;
        conv["messages"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("conversation has no messages array: {conv}"))
    }

    /// Sends a user message; the assistant's run starts on the server.
    pub async fn send_message(&self, conversation: &str, content: &str) -> Result<SentMessage> {
        let resp = self
            .request(
                Method::POST,
                &format!("/api/conversations/{conversation}/messages"),
            )
            .json(&json!({"content": content}))
            .send()
            .await?;
        let v = expect_json(resp, StatusCode::ACCEPTED, "send a message").await?;
        Ok(serde_json::from_value(v)?)
    }

    /// `GET /api/runs/{id}`.
    pub async fn run(&self, id: &str) -> Result<Value> {
        let resp = self.get(&format!("/api/runs/{id}")).await?;
        expect_json(resp, StatusCode::OK, "GET the run").await
    }

    /// `POST /api/runs/{id}/stop`.
    pub async fn stop(&self, id: &str) -> Result<Value> {
        let resp = self
            .request(Method::POST, &format!("/api/runs/{id}/stop"))
            .send()
            .await?;
        expect_json(resp, StatusCode::ACCEPTED, "stop the run").await
    }

    /// `POST /api/runs/{id}/continue`: the id of the continuation run.
    pub async fn continue_run(&self, id: &str) -> Result<String> {
        let resp = self
            .request(Method::POST, &format!("/api/runs/{id}/continue"))
            .send()
            .await?;
        let v = expect_json(resp, StatusCode::ACCEPTED, "continue the run").await?;
        str_field(&v, "run_id")
    }

    /// Polls `GET /api/runs/{id}` until the run has ended; returns its final view.
    pub async fn wait_run_ended(&self, id: &str, timeout: Duration) -> Result<Value> {
        crate::wait::until(&format!("run {id} to end"), timeout, || async {
            let run = self.run(id).await?;
            let status = run["status"].as_str().unwrap_or_default();
            Ok((!matches!(status, "queued" | "streaming")).then_some(run))
        })
        .await
    }

    /// Opens `GET /api/runs/{id}/events` resuming as `resume` says.
    pub async fn events(&self, run: &str, resume: Resume) -> Result<RunEvents> {
        let mut path = format!("/api/runs/{run}/events");
        if let Resume::After(seq) = resume {
            path.push_str(&format!("?after={seq}"));
        }
        // No overall timeout: a live stream lasts as long as its run.
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        if let Some(key) = &self.bearer {
            req = req.bearer_auth(key);
        }
        if let Resume::LastEventId(seq) = resume {
            req = req.header("last-event-id", seq.to_string());
        }
        let resp =
            crate::wait::within("open the run's event stream", CALL_TIMEOUT, req.send()).await??;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("GET {path}: expected 200, got {status}: {body}");
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !content_type.starts_with("text/event-stream") {
            bail!("GET {path}: content-type is {content_type:?}, not text/event-stream");
        }
        Ok(RunEvents {
            inner: Box::pin(resp.bytes_stream().eventsource()),
            ended: false,
        })
    }

    /// Every event of a run from `resume` to `finished`.
    pub async fn events_to_finished(&self, run: &str, resume: Resume) -> Result<Vec<SseEvent>> {
        self.events(run, resume).await?.to_finished().await
    }
}

/// Checks the status and parses the JSON body, with the body in the error otherwise.
pub async fn expect_json(resp: Response, expected: StatusCode, what: &str) -> Result<Value> {
    let status = resp.status();
    let body = resp.text().await.context("reading the response body")?;
    if status != expected {
        bail!("{what}: expected HTTP {expected}, got {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: body is not JSON: {body}"))
}

fn str_field(v: &Value, field: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no string field `{field}` in {v}"))
}

/// One server-sent event of a run: `id:` is the seq, `event:` the kind, `data:` JSON.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub seq: u64,
    pub kind: String,
    pub data: Value,
}

impl SseEvent {
    /// The text of a `delta` event.
    pub fn delta(&self) -> Option<&str> {
        (self.kind == "delta")
            .then(|| self.data["text"].as_str())
            .flatten()
    }

    pub fn is_finished(&self) -> bool {
        self.kind == "finished"
    }

    /// The run status a `finished` event carries.
    pub fn status(&self) -> Option<&str> {
        self.data["status"].as_str()
    }
}

/// The concatenated text of the `delta` events.
pub fn delta_text(events: &[SseEvent]) -> String {
    events.iter().filter_map(SseEvent::delta).collect()
}

type SseStream = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// An open event stream of one run. Dropping it closes the connection.
pub struct RunEvents {
    inner: SseStream,
    ended: bool,
}

impl RunEvents {
    /// The next event, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>> {
        if self.ended {
            return Ok(None);
        }
        let next =
            crate::wait::within("the next event of the run", CALL_TIMEOUT, self.inner.next())
                .await?;
        let event = match next {
            None => {
                self.ended = true;
                return Ok(None);
            }
            Some(Err(e)) => bail!("the event stream broke: {e}"),
            Some(Ok(event)) => event,
        };
        if event.event == "error" {
            bail!("the server sent an error event: {}", event.data);
        }
        let seq = event
            .id
            .parse()
            .with_context(|| format!("event id {:?} is not a seq (event {event:?})", event.id))?;
        let data: Value = serde_json::from_str(&event.data)
            .with_context(|| format!("event data is not JSON: {:?}", event.data))?;
        if data["kind"].as_str() != Some(event.event.as_str()) {
            bail!(
                "event `{}` carries data of kind {}: {}",
                event.event,
                data["kind"],
                event.data
            );
        }
        Ok(Some(SseEvent {
            seq,
            kind: event.event,
            data,
        }))
    }

    /// Up to `k` events (fewer only if the stream ended first).
    pub async fn take(&mut self, k: usize) -> Result<Vec<SseEvent>> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            match self.next().await? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// Every event up to and including `finished`; fails if the stream ends before it
    /// or anything follows it.
    pub async fn to_finished(&mut self) -> Result<Vec<SseEvent>> {
        let mut out: Vec<SseEvent> = Vec::new();
        loop {
            match self.next().await? {
                Some(e) => {
                    let done = e.is_finished();
                    out.push(e);
                    if done {
                        break;
                    }
                }
                None => bail!(
                    "the event stream ended without `finished` after {} events: {:?}",
                    out.len(),
                    out.iter().map(|e| (e.seq, &e.kind)).collect::<Vec<_>>()
                ),
            }
        }
        if let Some(extra) = self.next().await? {
            bail!("an event followed `finished`: {extra:?}");
        }
        Ok(out)
    }
}
