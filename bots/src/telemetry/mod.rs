//! Where logs, spans and metrics go (`[telemetry]`): log lines to stderr as text or
//! JSON (with the trace and span ids of the span each was logged in), spans to an
//! OTLP/HTTP collector, metrics to a Prometheus recorder whose rendering `/metrics`
//! serves (`metrics.rs`). Core only records; this is the one place that decides.
//!
//! Initialized in `main` before the async runtime starts, so that the exporter's
//! blocking HTTP client is built outside it, and shut down (flushing the last spans)
//! after the runtime has ended.

mod json;
pub mod metrics;

use chorus_core::telemetry::{LogFormat, TelemetryConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What `main` keeps of telemetry while the binary runs.
pub struct Telemetry {
    /// The Prometheus recorder's handle, when metrics are served.
    pub metrics: Option<PrometheusHandle>,
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter (blocking: call it
    /// outside the async runtime).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }
}

/// The crates whose spans are exported: Chorus's own. Libraries (matrix-sdk, sqlx,
/// hyper...) make many spans per request that no trace of a reply needs.
fn exported_targets() -> Targets {
    Targets::new()
        .with_target("chorus", LevelFilter::INFO)
        .with_target("chorus_core", LevelFilter::INFO)
        .with_target("chorus_providers", LevelFilter::INFO)
        .with_target("chorus_store", LevelFilter::INFO)
        .with_target("chorus_web", LevelFilter::INFO)
        .with_target("chorus_gateway", LevelFilter::INFO)
        .with_target("chorus_matrix", LevelFilter::INFO)
        .with_target("chorus_discord", LevelFilter::INFO)
        .with_target("chorus_slack", LevelFilter::INFO)
}

/// What is logged: `CHORUS_LOG` (or `RUST_LOG`), else INFO with the chatty libraries
/// turned down.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        // matrix-sdk logs each sync and send at INFO, every refused request at ERROR (a
        // 429 the renderer backs off from, a 404 for account data not set yet) and a key
        // backup warning on every sync; the Matrix surface logs what matters itself.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,sqlx=warn,matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=warn,\
                 matrix_sdk::http_client=off,matrix_sdk_crypto::backups=error",
            )
        })
}

/// Sets up logging for every command and, for `chorus serve` (`serving`), span
/// export and the metrics recorder as `[telemetry]` says.
pub fn init(config: &TelemetryConfig, serving: bool) -> anyhow::Result<Telemetry> {
    // JSON lines carry trace ids, which exist only where spans go through
    // OpenTelemetry: a tracer without an exporter gives them when nothing is exported.
    let tracer = (serving
        && (config.otlp_endpoint.is_some() || config.log_format == LogFormat::Json))
        .then(|| tracer(config))
        .transpose()?;
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(json::text_fields())
            // Colour codes only for a person at a terminal, not in container logs,
            // journald or files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::JsonWithTraceIds::new())
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
            .boxed(),
    };
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("chorus"))
            .with_filter(exported_targets())
    });
    let trace_ids = tracer.as_ref().map(|_| json::TraceIdLayer);
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(trace_ids)
        .init();
    json::remember_dispatch();
    let metrics = (serving && config.metrics_enabled())
        .then(install_recorder)
        .transpose()?;
    Ok(Telemetry { metrics, tracer })
}

/// The tracer provider: spans batched to the OTLP/HTTP endpoint when one is set.
fn tracer(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(url) = config.otlp_traces_url() {
        let headers = config
            .otlp_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_headers(headers)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the Prometheus recorder (before core starts, so every handle core takes
/// records into it) and describes core's metrics.
fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            chorus_core::telemetry::metrics::SECONDS_BUCKETS,
        )?
        .install_recorder()?;
    chorus_core::telemetry::metrics::describe();
    Ok(handle)
}
