//! The plumbing every fake provider shares, so each fake holds only its wire format:
//! a [`Recorder`] of the requests it received, [`FakeServer`] (an axum app served on
//! `127.0.0.1:0` that stops when dropped), [`paced_stream`] (a streaming reply sent
//! piece by piece, noting whether the client hung up before its end) and the SSE
//! framing ([`sse_data`], [`sse_event`]).

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use std::convert::Infallible;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// What the shared provider checks need of a fake.
pub trait FakeProvider {
    /// When each request arrived, in order.
    fn request_times(&self) -> Vec<Instant>;
}

/// An axum app served on `127.0.0.1:0`. Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn spawn(app: Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Set (by [`paced_stream`]) when the client closed the connection before the reply
/// was complete.
pub fn hung_up(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Records a hang-up when the reply stream is dropped before its end.
struct HangUpGuard {
    /// Taken when the reply is complete.
    flag: Option<Arc<AtomicBool>>,
}

impl Drop for HangUpGuard {
    fn drop(&mut self) {
        if let Some(flag) = &self.flag {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// A reply body that sends `pieces` one at a time, each after a pause of
/// `pause(index)`, and sets `hang_up` (if any) unless every piece went out.
pub fn paced_stream(
    pieces: Vec<Bytes>,
    pause: impl Fn(usize) -> Duration + Send + Sync + 'static,
    hang_up: Option<Arc<AtomicBool>>,
) -> Body {
    let guard = HangUpGuard { flag: hang_up };
    let pause = Arc::new(pause);
    let stream = futures::stream::unfold(
        (pieces.into_iter(), 0usize, guard),
        move |(mut pieces, n, mut guard)| {
            let pause = pause.clone();
            async move {
                match pieces.next() {
                    Some(piece) => {
                        tokio::time::sleep(pause(n)).await;
                        Some((Ok::<_, Infallible>(piece), (pieces, n + 1, guard)))
                    }
                    None => {
                        guard.flag.take(); // the whole reply went out
                        None
                    }
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// A 200 reply of `content_type` with the `headers` given, carrying `body`.
pub fn streaming_response(content_type: &str, headers: &[(&str, &str)], body: Body) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// One unnamed SSE event: `data: VALUE` and a blank line.
pub fn sse_data(value: impl Display) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One named SSE event: `event: NAME`, `data: JSON` and a blank line.
pub fn sse_event(name: &str, data: impl Display) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
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
