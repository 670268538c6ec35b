//! The HTTP server loop of every listener (the application's and the metrics one).
//!
//! It lives here, not in the binary, so that hyper's connection handling (parsing,
//! the request and response bodies, the graceful shutdown of each connection) is
//! compiled with the web surface at the hot path's opt-level, while the binary crate
//! that wires the surfaces together is built for size (`Cargo.toml`, release
//! profile). The function is not generic, so it is instantiated here and nowhere
//! else.

use axum::Router;
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::net::TcpListener;

/// What stops a server: a future that completes when it should stop taking
/// connections.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open
/// connections to finish (open event streams end when their own shutdown token is
/// cancelled). Each request can read its client's address as
/// `ConnectInfo<SocketAddr>` (the per-client login limits need it).
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    // Replies stream as many small writes (an event per token). With Nagle's algorithm
    // on, a write waits for the client's acknowledgement of the one before, which
    // clients delay by up to 40 ms: the first tokens of every reply came that late.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
