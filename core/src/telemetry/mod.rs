//! Telemetry: the `[telemetry]` section (`config.rs`) and the metrics core records
//! (`metrics.rs`). Spans are made where the work happens (the facade's reply, the
//! engine's run, attempts, tool calls, sandbox executions) with `tracing`; the binary
//! decides where they and the metrics go. `timing.rs` times the phases of requests
//! when `[telemetry] timing` is on.

pub mod config;
pub mod metrics;
pub mod timing;

pub use self::metrics::StreamReaderGuard;
pub use config::{LogFormat, TelemetryConfig};
