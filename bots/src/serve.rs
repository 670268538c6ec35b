//! `chorus serve`: start core, serve HTTP, and shut down gracefully on SIGINT/SIGTERM
//! (stop accepting, end local runs as `interrupted` with their text kept).

use chorus_core::Core;
use chorus_core::config::Config;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let scripted_only = config.providers.is_empty();
    let core = Core::start(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "chorus is listening on http://{addr}");
    if scripted_only {
        tracing::info!("no provider configured: serving the scripted demo model");
    }
    let streams_done = tokio_util::sync::CancellationToken::new();
    let app = chorus_web::router(core.clone(), streams_done.clone());
    let engine_core = core.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: interrupting local runs");
            // Runs end first, so their readers see `finished`; then open streams close.
            engine_core
                .engine()
                .shutdown(std::time::Duration::from_secs(10))
                .await;
            streams_done.cancel();
        })
        .await?;
    core.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
