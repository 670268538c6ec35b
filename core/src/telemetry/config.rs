//! The `[telemetry]` section: where Prometheus metrics are served, where traces go
//! (OTLP over HTTP), whether spans may carry message text, and the log format.
//!
//! Every default keeps telemetry private: no metrics endpoint at all, no trace
//! export, no message text in spans, plain text logs.

use chorus_model::config::{ConfigError, invalid};
use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of a listener of its own that serves only `GET /metrics` (Prometheus
    /// text format), e.g. `127.0.0.1:9464`: reachable by the scraper, not by users.
    /// Unset: no such listener.
    pub metrics_listen: Option<String>,
    /// Also serve the metrics on the main listener (`server.listen`) at this path,
    /// e.g. `/metrics`. Whoever reaches the web server then reads them unless
    /// `metrics_token` is set. Unset: the main listener has no metrics route.
    pub metrics_path: Option<String>,
    /// A bearer token a scraper must send (`Authorization: Bearer TOKEN`) on either
    /// metrics endpoint. Unset: none is asked for.
    pub metrics_token: Option<Secret>,
    /// Where spans are exported over OTLP/HTTP (protobuf): the collector's base URL,
    /// as in `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is added unless the URL
    /// already ends with it), e.g. `http://127.0.0.1:4318`. Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export (e.g. `Authorization` for a hosted collector);
    /// masked in `chorus config check`.
    pub otlp_headers: BTreeMap<String, Secret>,
    /// The `service.name` of exported spans.
    pub service_name: String,
    /// Whether spans carry message text: the question, the reply and tool arguments
    /// and results. Off: only sizes, models, providers, token counts and outcomes.
    pub include_content: bool,
    /// `text` (human-readable lines) or `json` (one object a line, with the
    /// `trace_id` and `span_id` of the span it was logged in).
    pub log_format: LogFormat,
    /// Whether each request's phases (authentication, admission, the turn's write,
    /// following the run...) and the store's group commits are timed and logged at
    /// target `chorus_core::telemetry::timing` (INFO), for finding where latency goes
    /// (`bench --timing`). Off: nothing is timed.
    pub timing: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            metrics_path: None,
            metrics_token: None,
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            service_name: "chorus".into(),
            include_content: false,
            log_format: LogFormat::Text,
            timing: false,
        }
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Paths of the main listener a metrics route may not shadow.
const TAKEN_PREFIXES: &[&str] = &["/api", "/v1", "/slack", "/assets"];

impl TelemetryConfig {
    /// Whether metrics are served anywhere (and so worth recording).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_listen.is_some() || self.metrics_path.is_some()
    }

    /// The metrics listener's address, if one is configured.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.metrics_listen
            .as_deref()
            .map(|a| {
                a.parse().map_err(|_| {
                    invalid(
                        "telemetry.metrics_listen",
                        a,
                        "HOST:PORT, e.g. 127.0.0.1:9464",
                    )
                })
            })
            .transpose()
    }

    /// The OTLP traces URL: the endpoint with `/v1/traces` added unless it is there.
    pub fn otlp_traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if endpoint.ends_with("/v1/traces") {
            endpoint.to_string()
        } else {
            format!("{endpoint}/v1/traces")
        })
    }

    /// Checks the section; `server_listen` is the main listener's address, which the
    /// metrics listener may not take.
    pub fn validate(&self, server_listen: Option<SocketAddr>) -> Result<(), ConfigError> {
        if let Some(addr) = self.metrics_addr()?
            && Some(addr) == server_listen
        {
            return Err(invalid(
                "telemetry.metrics_listen",
                addr.to_string(),
                "an address other than server.listen (use telemetry.metrics_path to serve \
                 metrics on the main listener)",
            ));
        }
        if let Some(path) = &self.metrics_path {
            let taken = TAKEN_PREFIXES
                .iter()
                .any(|p| path == p || path.starts_with(&format!("{p}/")));
            if !path.starts_with('/')
                || path.len() < 2
                || path.contains(|c: char| c.is_whitespace() || c == '{' || c == '*')
                || taken
            {
                return Err(invalid(
                    "telemetry.metrics_path",
                    path,
                    "a path such as /metrics, outside /api, /v1, /slack and /assets",
                ));
            }
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    chorus_model::secret::mask_url_password(endpoint),
                    "an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318",
                ));
            }
        }
        for name in self.otlp_headers.keys() {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(invalid(
                    format!("telemetry.otlp_headers.{name}"),
                    name,
                    "an HTTP header name (letters, digits, - and _)",
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid(
                "telemetry.service_name",
                &self.service_name,
                "a non-empty name",
            ));
        }
        Ok(())
    }

    /// Valid settings a shared deployment would regret, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.metrics_path.is_some() && self.metrics_token.is_none() {
            warnings.push(
                "telemetry.metrics_path is set without telemetry.metrics_token: whoever reaches \
                 the web server reads the metrics"
                    .to_string(),
            );
        }
        if self.include_content {
            warnings.push(
                "telemetry.include_content = true: questions, replies and tool results go to \
                 the trace collector"
                    .to_string(),
            );
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> TelemetryConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_serve_and_export_nothing() {
        let c = TelemetryConfig::default();
        assert!(!c.metrics_enabled() && c.otlp_traces_url().is_none());
        assert!(!c.include_content && c.log_format == LogFormat::Text);
        assert!(c.validate(None).is_ok() && c.warnings().is_empty());
    }

    #[test]
    fn bad_values_name_the_key() {
        let listen: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        for (toml, key) in [
            ("metrics_listen = \"nine\"", "telemetry.metrics_listen"),
            (
                "metrics_listen = \"127.0.0.1:3000\"",
                "telemetry.metrics_listen",
            ),
            ("metrics_path = \"metrics\"", "telemetry.metrics_path"),
            ("metrics_path = \"/api/metrics\"", "telemetry.metrics_path"),
            ("metrics_path = \"/v1\"", "telemetry.metrics_path"),
            (
                "otlp_endpoint = \"collector:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"grpc://h:4317\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_headers = { \"bad header\" = \"x\" }",
                "telemetry.otlp_headers",
            ),
            ("service_name = \" \"", "telemetry.service_name"),
        ] {
            let err = parse(toml).validate(Some(listen)).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        assert!(
            parse("metrics_path = \"/metrics\"\nmetrics_listen = \"127.0.0.1:9464\"")
                .validate(Some(listen))
                .is_ok()
        );
    }

    #[test]
    fn the_traces_url_follows_the_otlp_convention() {
        let url = |e: &str| parse(&format!("otlp_endpoint = {e:?}")).otlp_traces_url();
        assert_eq!(
            url("http://c:4318").as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            url("http://c:4318/").as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            url("https://x/api/public/otel/v1/traces").as_deref(),
            Some("https://x/api/public/otel/v1/traces")
        );
    }

    #[test]
    fn risky_settings_warn() {
        let w = parse("metrics_path = \"/metrics\"\ninclude_content = true").warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("telemetry.metrics_path")
                && w[1].starts_with("telemetry.include_content")
        );
        assert!(
            parse("metrics_path = \"/metrics\"\nmetrics_token = \"t\"")
                .warnings()
                .is_empty()
        );
    }
}
