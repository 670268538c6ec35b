//! `chorus serve`: start core, serve HTTP (the web surface and the OpenAI- and
//! Anthropic-compatible gateway) and the chat surfaces (Matrix when `[matrix]` is set,
//! Discord when `[discord]` is, Slack when `[slack]` is), and shut down gracefully on
//! SIGINT/SIGTERM (stop accepting, stop every surface and its renderers so the next
//! start resumes them, end local runs as `interrupted` with their text kept).

use crate::settings::Settings;
use crate::telemetry;
use chorus_core::chat::{SupervisedSurface, supervise_surface};
use chorus_core::{Conflict, Core, CoreError};
use metrics_exporter_prometheus::PrometheusHandle;

/// Serves until SIGINT/SIGTERM. `metrics` is the recorder's handle when
/// `[telemetry]` serves metrics.
pub async fn serve(settings: Settings, metrics: Option<PrometheusHandle>) -> anyhow::Result<()> {
    // The admin console's Configuration page shows what `chorus config show` prints.
    let config_dump = chorus_admin::ConfigDump(settings.masked_toml().into());
    let Settings {
        core: config,
        matrix: matrix_config,
        gateway: gateway_config,
        discord: discord_config,
        slack: slack_config,
    } = settings;
    let addr = config.listen_addr()?;
    let metrics_addr = config.telemetry.metrics_addr()?;
    let telemetry_config = config.telemetry.clone();
    // Read once: off, every timing call costs one relaxed atomic load.
    if telemetry_config.timing {
        chorus_core::telemetry::timing::enable();
    }
    let scripted_only = config.providers.is_empty();
    let data_dir = config.data_dir();
    let core = Core::start(config).await?;
    bootstrap_admin(&core, &data_dir).await?;
    core.start_background();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "chorus is listening on http://{addr}");
    if scripted_only {
        tracing::info!("no provider configured: serving the scripted demo model");
    }
    // Every chat surface starts in the background and is stopped the same way: one
    // that cannot reach its platform is retried while the rest serves (`/readyz`
    // says which is down).
    let mut surfaces: Vec<SupervisedSurface> = Vec::new();
    if let Some(matrix) = matrix_config {
        let (core, data_dir) = (core.clone(), data_dir.clone());
        surfaces.push(supervise_surface(&core.clone(), "matrix", move || {
            let (core, matrix, data_dir) = (core.clone(), matrix.clone(), data_dir.clone());
            async move { chorus_matrix::start(core, &matrix, &data_dir).await }
        }));
    }
    if let Some(discord) = discord_config {
        let (core, data_dir) = (core.clone(), data_dir.clone());
        surfaces.push(supervise_surface(&core.clone(), "discord", move || {
            let (core, discord, data_dir) = (core.clone(), discord.clone(), data_dir.clone());
            async move { chorus_discord::start(core, &discord, &data_dir).await }
        }));
    }
    // Slack's Events API comes to this listener; the endpoint refuses requests until
    // the surface is up (and every unsigned one always).
    let slack_events = slack_config
        .as_ref()
        .map(|s| chorus_slack::EventsEndpoint::new(s.signing_secret.as_ref()));
    if let (Some(slack), Some(endpoint)) = (&slack_config, &slack_events) {
        let (core, slack, endpoint) = (core.clone(), slack.clone(), endpoint.clone());
        surfaces.push(supervise_surface(&core.clone(), "slack", move || {
            let (core, slack, endpoint) = (core.clone(), slack.clone(), endpoint.clone());
            async move { chorus_slack::start(core, &slack, &endpoint).await }
        }));
    }
    let streams_done = tokio_util::sync::CancellationToken::new();
    let admin = chorus_admin::routes(config_dump);
    let mut app = chorus_web::router_with(core.clone(), streams_done.clone(), admin).merge(
        chorus_gateway::router(core.clone(), gateway_config, streams_done.clone()),
    );
    if let (Some(s), Some(endpoint)) = (&slack_config, &slack_events)
        && s.mode == chorus_slack::config::Mode::Events
    {
        app = app.merge(endpoint.router());
    }
    // Metrics: a listener of their own (private by its address), and/or a path of
    // this one; neither unless configured.
    let stopping = tokio_util::sync::CancellationToken::new();
    let mut metrics_server = None;
    if let Some(handle) = metrics {
        tokio::spawn(telemetry::metrics::upkeep(handle.clone(), stopping.clone()));
        let token = telemetry_config.metrics_token.clone();
        if let Some(path) = &telemetry_config.metrics_path {
            app = app.merge(telemetry::metrics::router(
                core.clone(),
                handle.clone(),
                token.clone(),
                path,
            ));
        }
        if let Some(metrics_addr) = metrics_addr {
            let listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {metrics_addr} (telemetry.metrics_listen): {e}"
                    )
                })?;
            tracing::info!(%metrics_addr, "metrics at http://{metrics_addr}/metrics");
            let router = telemetry::metrics::router(core.clone(), handle, token, "/metrics");
            let stop = stopping.clone();
            metrics_server = Some(tokio::spawn(chorus_web::serve(
                listener,
                router,
                Box::pin(stop.cancelled_owned()),
            )));
        }
    }
    let engine_core = core.clone();
    let stop_metrics = stopping.clone();
    // Handlers see the client address (per-client login limits).
    chorus_web::serve(
        listener,
        app,
        Box::pin(async move {
            shutdown_signal().await;
            stop_metrics.cancel();
            for surface in surfaces {
                tracing::info!(
                    surface = surface.name(),
                    "shutting down: stopping a chat surface"
                );
                // Before the runs end: its renderers stop with their state unfinished,
                // and the next start resumes (or continues) those replies.
                surface.shutdown().await;
            }
            tracing::info!("shutting down: interrupting local runs");
            // Runs end first, so their readers see `finished`; then open streams close.
            engine_core.interrupt_runs().await;
            streams_done.cancel();
        }),
    )
    .await?;
    stopping.cancel();
    if let Some(server) = metrics_server
        && let Ok(Err(e)) = server.await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
    core.shutdown().await;
    Ok(())
}

/// On a fresh install (no account at all), creates an `admin` account so the web
/// client can be used at once. Its generated password goes to a file readable only by
/// the owner, never to the log.
async fn bootstrap_admin(core: &Core, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if core.account_count().await? > 0 {
        return Ok(());
    }
    let password = chorus_core::auth::new_token()[..20].to_string();
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("initial-admin-password");
    write_private(&path, &format!("{password}\n"))?;
    match core.create_account("admin", true, Some(&password)).await {
        Ok(_) => {
            tracing::warn!(
                file = %path.display(),
                "first start: created the account `admin`; its password is in the file (delete it once read)"
            );
            Ok(())
        }
        // Several instances started together on one empty database: another one
        // created `admin` first, and its data directory has the password.
        Err(CoreError::Conflict(Conflict::AccountNameTaken { .. })) => {
            std::fs::remove_file(&path)?;
            tracing::info!("first start: another instance created the account `admin`");
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e.into())
        }
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
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
