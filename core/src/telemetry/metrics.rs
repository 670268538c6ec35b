//! The metrics core records, in one place: their names, what they mean, and the few
//! functions the instrumented places call (the engine, the journals, the tool host,
//! the sandbox, the surface board, the renderer and the facade).
//!
//! Recording goes through the `metrics` facade; the binary installs the Prometheus
//! recorder before core starts (without one, every call here does nothing). Labels are
//! bounded sets only: surfaces, configured providers, models and tool sources, states
//! and outcomes — never an account, conversation or run id. What happens per token
//! goes through handles registered once per reply ([`ReplyMeter`]) or once per process
//! (the journal's histograms), so streaming allocates nothing for metrics.

use ::metrics::{
    Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const REPLIES_STARTED: &str = "chorus_replies_started_total";
pub const REPLIES_ENDED: &str = "chorus_replies_ended_total";
pub const REPLIES_STREAMING: &str = "chorus_replies_streaming";
pub const TOKENS_IN: &str = "chorus_tokens_in_total";
pub const TOKENS_OUT: &str = "chorus_tokens_out_total";
pub const CREDITS_CHARGED: &str = "chorus_credits_charged_micros_total";
pub const FIRST_TOKEN: &str = "chorus_reply_first_token_seconds";
pub const EVENT_INTERVAL: &str = "chorus_reply_event_interval_seconds";
pub const JOURNAL_APPEND: &str = "chorus_journal_append_seconds";
pub const JOURNAL_FANOUT: &str = "chorus_journal_fanout_seconds";
pub const SSE_READERS: &str = "chorus_sse_readers";
pub const PROVIDER_ERRORS: &str = "chorus_provider_errors_total";
pub const PROVIDER_RETRIES: &str = "chorus_provider_retries_total";
pub const FALLBACKS: &str = "chorus_provider_fallbacks_total";
pub const TOOL_CALLS: &str = "chorus_tool_calls_total";
pub const TOOL_CALL_SECONDS: &str = "chorus_tool_call_seconds";
pub const SANDBOX_EXECUTIONS: &str = "chorus_sandbox_executions_total";
pub const SANDBOX_SECONDS: &str = "chorus_sandbox_execution_seconds";
pub const SANDBOX_CONTAINERS: &str = "chorus_sandbox_containers";
pub const SURFACE_STATE: &str = "chorus_surface_state";
pub const RATE_LIMIT_WAIT: &str = "chorus_surface_rate_limit_wait_seconds";
pub const DB_POOL: &str = "chorus_db_pool_connections";
pub const DB_POOL_MAX: &str = "chorus_db_pool_max_connections";
pub const DB_ROUND_TRIP: &str = "chorus_db_round_trip_seconds";
pub const REDIS_ROUND_TRIP: &str = "chorus_redis_round_trip_seconds";

/// Every metric core records.
pub const ALL: &[&str] = &[
    REPLIES_STARTED,
    REPLIES_ENDED,
    REPLIES_STREAMING,
    TOKENS_IN,
    TOKENS_OUT,
    CREDITS_CHARGED,
    FIRST_TOKEN,
    EVENT_INTERVAL,
    JOURNAL_APPEND,
    JOURNAL_FANOUT,
    SSE_READERS,
    PROVIDER_ERRORS,
    PROVIDER_RETRIES,
    FALLBACKS,
    TOOL_CALLS,
    TOOL_CALL_SECONDS,
    SANDBOX_EXECUTIONS,
    SANDBOX_SECONDS,
    SANDBOX_CONTAINERS,
    SURFACE_STATE,
    RATE_LIMIT_WAIT,
    DB_POOL,
    DB_POOL_MAX,
    DB_ROUND_TRIP,
    REDIS_ROUND_TRIP,
];

/// Upper bounds of the latency histograms, in seconds: from a journal append in
/// process (tens of microseconds) to a slow first token (a minute).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Gives every metric its help text and unit; the binary calls it once after
/// installing the recorder.
pub fn describe() {
    describe_counter!(
        REPLIES_STARTED,
        "Replies (runs) started, by surface and the provider and model tried first"
    );
    describe_counter!(
        REPLIES_ENDED,
        "Replies ended, by surface, the provider and model that answered last, and status \
         (complete, stopped, interrupted, failed)"
    );
    describe_gauge!(
        REPLIES_STREAMING,
        "Replies executing on this instance now, by surface"
    );
    describe_counter!(
        TOKENS_IN,
        "Prompt tokens of ended replies (as reported, or estimated)"
    );
    describe_counter!(TOKENS_OUT, "Completion tokens of ended replies");
    describe_counter!(
        CREDITS_CHARGED,
        "Credits charged for ended replies, in micro-credits (1 credit = 1,000,000)"
    );
    describe_histogram!(
        FIRST_TOKEN,
        Unit::Seconds,
        "From a reply's start to its first streamed output, fallbacks and retries included"
    );
    describe_histogram!(
        EVENT_INTERVAL,
        Unit::Seconds,
        "Time between two consecutive events a provider streamed (inter-token latency)"
    );
    describe_histogram!(
        JOURNAL_APPEND,
        Unit::Seconds,
        "One journal append by a reply's writer (in process, or XADD to Redis)"
    );
    describe_histogram!(
        JOURNAL_FANOUT,
        Unit::Seconds,
        "From a journal append to a live reader on this instance receiving the event"
    );
    describe_gauge!(
        SSE_READERS,
        "Open event streams of replies (web SSE, gateway streams), by surface"
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Failed provider attempts, by provider and error kind"
    );
    describe_counter!(
        PROVIDER_RETRIES,
        "Provider attempts retried on the same model, by provider"
    );
    describe_counter!(
        FALLBACKS,
        "Generations handed to the next model of a fallback chain, by the models it went from and to"
    );
    describe_counter!(
        TOOL_CALLS,
        "Tool calls (MCP servers and the sandbox), by source and result (ok, error, timeout)"
    );
    describe_histogram!(
        TOOL_CALL_SECONDS,
        Unit::Seconds,
        "Duration of tool calls, by source"
    );
    describe_counter!(
        SANDBOX_EXECUTIONS,
        "Code sandbox executions, by language and result (ok, exit_error, timeout, oom, failed)"
    );
    describe_histogram!(
        SANDBOX_SECONDS,
        Unit::Seconds,
        "Duration of sandbox executions, by language"
    );
    describe_gauge!(
        SANDBOX_CONTAINERS,
        "Sandbox containers this instance has created and not removed yet"
    );
    describe_gauge!(
        SURFACE_STATE,
        "1 for the state each chat surface's connection is in (starting, connected, down), 0 for the others"
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Waits a chat surface's platform imposed (429 Retry-After), by surface"
    );
    describe_gauge!(
        DB_POOL,
        "Database connections of this instance's pool, by state (idle, in_use)"
    );
    describe_gauge!(DB_POOL_MAX, "Largest size of the database pool");
    describe_histogram!(
        DB_ROUND_TRIP,
        Unit::Seconds,
        "A trivial database query, timed at each scrape"
    );
    describe_histogram!(
        REDIS_ROUND_TRIP,
        Unit::Seconds,
        "A Redis PING, timed at each scrape (when the journal is in Redis)"
    );
}

/// The label of a surface: one of the known names, `other` for anything else, so a
/// caller's string can never grow the label set.
pub fn surface_label(name: &str) -> &'static str {
    match name {
        "web" => "web",
        "gateway" => "gateway",
        "matrix" => "matrix",
        "discord" => "discord",
        "slack" => "slack",
        _ => "other",
    }
}

/// The `provider/model` reference's provider, the label of both halves.
fn provider_of(model_ref: &str) -> String {
    model_ref
        .split_once('/')
        .map_or(model_ref, |(p, _)| p)
        .to_string()
}

/// A reply's metrics from its start to its end: counted as started and streaming
/// when made, its intervals recorded through a handle taken once, and counted as
/// ended with its usage and charge by [`ReplyMeter::ended`]. Dropping it (however
/// the run's task ends) takes it out of the streaming gauge.
pub(crate) struct ReplyMeter {
    surface: &'static str,
    started_at: Instant,
    streaming: Gauge,
    interval: Histogram,
    last_event: Option<Instant>,
    first_token_seen: bool,
}

impl ReplyMeter {
    /// A reply on `surface` began with `model_ref` (`provider/model`, the first
    /// model of its chain).
    pub fn start(surface: &'static str, model_ref: &str) -> Self {
        counter!(REPLIES_STARTED, "surface" => surface, "provider" => provider_of(model_ref), "model" => model_ref.to_string())
            .increment(1);
        let streaming = gauge!(REPLIES_STREAMING, "surface" => surface);
        streaming.increment(1.0);
        Self {
            surface,
            started_at: Instant::now(),
            streaming,
            interval: histogram!(EVENT_INTERVAL, "surface" => surface),
            last_event: None,
            first_token_seen: false,
        }
    }

    /// A new provider attempt begins: the gap before its first event is not an
    /// interval between events.
    pub fn attempt(&mut self) {
        self.last_event = None;
    }

    /// A provider event arrived (the hot path: one `Instant::now` and one record).
    pub fn event(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_event.replace(now) {
            self.interval.record(now - last);
        }
    }

    /// The reply's first output arrived, from `model_ref`; later calls do nothing.
    pub fn first_output(&mut self, model_ref: &str) {
        if std::mem::replace(&mut self.first_token_seen, true) {
            return;
        }
        histogram!(FIRST_TOKEN, "surface" => self.surface, "provider" => provider_of(model_ref), "model" => model_ref.to_string())
            .record(self.started_at.elapsed());
    }

    /// The reply ended with `status`, answered last by `model_ref`, with its token
    /// counts and charge (micro-credits).
    pub fn ended(&self, status: &str, model_ref: &str, tokens: Option<(u64, u64)>, charged: i64) {
        let (provider, model) = (provider_of(model_ref), model_ref.to_string());
        counter!(REPLIES_ENDED, "surface" => self.surface, "provider" => provider.clone(), "model" => model.clone(), "status" => status.to_string())
            .increment(1);
        if let Some((prompt, completion)) = tokens {
            counter!(TOKENS_IN, "surface" => self.surface, "provider" => provider.clone(), "model" => model.clone())
                .increment(prompt);
            counter!(TOKENS_OUT, "surface" => self.surface, "provider" => provider.clone(), "model" => model.clone())
                .increment(completion);
        }
        if charged > 0 {
            counter!(CREDITS_CHARGED, "surface" => self.surface, "provider" => provider, "model" => model)
                .increment(charged as u64);
        }
    }
}

impl Drop for ReplyMeter {
    fn drop(&mut self) {
        self.streaming.decrement(1.0);
    }
}

/// A run whose instance died was ended `interrupted` by the sweeper, charged
/// `charged` micro-credits; its surface is unknown here (`other`).
pub(crate) fn orphan_interrupted(model_ref: &str, charged: i64) {
    let (provider, model) = (provider_of(model_ref), model_ref.to_string());
    counter!(REPLIES_ENDED, "surface" => "other", "provider" => provider.clone(), "model" => model.clone(), "status" => "interrupted")
        .increment(1);
    if charged > 0 {
        counter!(CREDITS_CHARGED, "surface" => "other", "provider" => provider, "model" => model)
            .increment(charged as u64);
    }
}

/// The writer's journal append histogram, registered once per process.
pub(crate) fn journal_append() -> &'static Histogram {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!(JOURNAL_APPEND))
}

/// The journal's fan-out histogram, registered once per process.
pub(crate) fn journal_fanout() -> &'static Histogram {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!(JOURNAL_FANOUT))
}

/// Counts one open event stream of a reply while held (a web SSE response, a
/// gateway stream); dropping it when the stream ends or the client goes.
pub struct StreamReaderGuard(Gauge);

impl StreamReaderGuard {
    pub fn open(surface: &str) -> Self {
        let gauge = gauge!(SSE_READERS, "surface" => surface_label(surface));
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for StreamReaderGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A provider attempt failed with an error of `kind`.
pub(crate) fn provider_error(provider: &str, kind: &'static str) {
    counter!(PROVIDER_ERRORS, "provider" => provider.to_string(), "kind" => kind).increment(1);
}

/// A provider attempt is retried on the same model.
pub(crate) fn provider_retry(provider: &str) {
    counter!(PROVIDER_RETRIES, "provider" => provider.to_string()).increment(1);
}

/// A generation went from one model of its chain to the next.
pub(crate) fn fallback(from: &str, to: &str) {
    counter!(FALLBACKS, "from" => from.to_string(), "to" => to.to_string()).increment(1);
}

/// A tool call of `source` ended with `result` (`ok`, `error`, `timeout`).
pub(crate) fn tool_call(source: &str, result: &'static str, took: Duration) {
    counter!(TOOL_CALLS, "source" => source.to_string(), "result" => result).increment(1);
    histogram!(TOOL_CALL_SECONDS, "source" => source.to_string()).record(took);
}

/// A sandbox execution of `language` (a configured one, or `other`) ended with `result`.
pub(crate) fn sandbox_execution(language: &str, result: &'static str, took: Duration) {
    counter!(SANDBOX_EXECUTIONS, "language" => language.to_string(), "result" => result)
        .increment(1);
    histogram!(SANDBOX_SECONDS, "language" => language.to_string()).record(took);
}

/// A sandbox container was created (`1.0`) or removed (`-1.0`).
pub(crate) fn sandbox_containers(delta: f64) {
    gauge!(SANDBOX_CONTAINERS).increment(delta);
}

/// The states a surface's connection may be in, as labels.
const SURFACE_STATES: [&str; 3] = ["starting", "connected", "down"];

/// A chat surface's connection is now in `state` (one of [`SURFACE_STATES`]).
pub(crate) fn surface_state(surface: &str, state: &'static str) {
    let surface = surface_label(surface);
    for s in SURFACE_STATES {
        gauge!(SURFACE_STATE, "surface" => surface, "state" => s).set(if s == state {
            1.0
        } else {
            0.0
        });
    }
}

/// A chat surface waits `wait` because its platform rate-limited it.
pub(crate) fn rate_limit_wait(surface: &str, wait: Duration) {
    histogram!(RATE_LIMIT_WAIT, "surface" => surface_label(surface)).record(wait);
}

/// The database pool as it stands.
pub(crate) fn db_pool(size: u32, idle: u32, max: u32) {
    gauge!(DB_POOL, "state" => "idle").set(f64::from(idle));
    gauge!(DB_POOL, "state" => "in_use").set(f64::from(size.saturating_sub(idle)));
    gauge!(DB_POOL_MAX).set(f64::from(max));
}

pub(crate) fn db_round_trip(took: Duration) {
    histogram!(DB_ROUND_TRIP).record(took);
}

pub(crate) fn redis_round_trip(took: Duration) {
    histogram!(REDIS_ROUND_TRIP).record(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard and the README's table show every metric, and name
    /// none that does not exist (histograms by their `_bucket`, `_sum`, `_count`).
    #[test]
    fn the_dashboard_and_the_readme_show_every_metric() {
        let dashboard = include_str!("../../../deploy/grafana/chorus-dashboard.json");
        let readme = include_str!("../../../README.md");
        let parsed: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        assert!(parsed["panels"].as_array().is_some_and(|p| !p.is_empty()));
        for name in ALL {
            assert!(
                dashboard.contains(name),
                "the dashboard does not show {name}"
            );
            assert!(
                readme.contains(&format!("`{name}`")),
                "README's metric table does not list {name}"
            );
        }
        let mut rest = dashboard;
        while let Some(at) = rest.find("chorus_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let used = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| used.strip_suffix(suffix))
                .unwrap_or(used);
            assert!(
                ALL.contains(&used) || ALL.contains(&base),
                "the dashboard names {used}, which Chorus does not record"
            );
            rest = &tail[end..];
        }
    }

    #[test]
    fn labels_stay_within_their_sets() {
        assert_eq!(surface_label("matrix"), "matrix");
        assert_eq!(surface_label("!room:example.org"), "other");
        assert_eq!(provider_of("openai/gpt-4o"), "openai");
        assert_eq!(provider_of("alias"), "alias");
    }
}
