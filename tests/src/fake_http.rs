//! The HTTP plumbing under every fake server: [`FakeServer`] (an axum app served on
//! `127.0.0.1:0` that stops when dropped), [`paced_stream`] (a streaming reply sent
//! piece by piece, noting whether the client hung up before its end), a streaming
//! response, and the SSE framing ([`sse_data`], [`sse_event`]). Fixtures and the
//! generic fake both build on it.

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::convert::Infallible;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An axum app served on `127.0.0.1:0` (or an address given). Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn spawn(app: Router) -> anyhow::Result<Self> {
        Self::spawn_on("127.0.0.1:0".parse()?, app).await
    }

    /// Serves `app` on `addr` (port 0: any free one), e.g. a Docker network's gateway
    /// address, where containers on that network reach the host.
    pub async fn spawn_on(addr: SocketAddr, app: Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// `http://ADDRESS:PORT` followed by `path`.
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
