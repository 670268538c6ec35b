//! The `[gateway]` section: whether the OpenAI- and Anthropic-compatible API is
//! served, how its requests are kept, and what a dropped client does to its run.

use chorus_core::config::Config;
use chorus_core::{GatewayKeep, GatewayRunOptions};
use chorus_model::config::{ConfigError, invalid};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The name of the gateway's section in `chorus.toml`.
pub const SECTION: &str = "gateway";

/// The gateway. Absent, it is served with these defaults.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Serve `/v1/chat/completions`, `/v1/models` and `/v1/messages`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Stop a run when its client disconnects. Off by default: the run goes on, is
    /// charged, and the client reads the rest from `/api/runs/{id}/events` with the
    /// `x-chorus-run-id` it was given. A stopped run is charged for what it used.
    #[serde(default)]
    pub cancel_on_disconnect: bool,
    /// How requests are kept. `runs` (the default): as runs their owner reads through
    /// the API (`/api/runs/{id}`, usage) but that stay out of the web client's
    /// conversation list, deleted after `retention_days` — scripts and IDE
    /// assistants send thousands. `conversations`: as conversations in the web
    /// client, kept like any other.
    #[serde(default)]
    pub keep: Keep,
    /// Days a request kept as a run is readable before it is deleted (its charge
    /// stays in the ledger). Fractions are allowed.
    #[serde(default = "default_retention_days")]
    pub retention_days: f64,
    /// Send a request's provider call while its admission is written, so that the
    /// write does not add to the reply's latency. Only for accounts whose admission
    /// is certain or likely: no balance or concurrency limit to check, or a balance
    /// that covers the run and no refusal of the account on this instance in the
    /// last minute. A request refused after all has its call cancelled before
    /// anything was read from it (the provider may still bill its prompt). `false`:
    /// every call waits for its admission.
    #[serde(default = "default_early_upstream")]
    pub early_upstream: bool,
}

/// `[gateway] keep`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    #[default]
    Runs,
    Conversations,
}

fn default_retention_days() -> f64 {
    30.0
}

fn default_enabled() -> bool {
    true
}

fn default_early_upstream() -> bool {
    true
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            cancel_on_disconnect: false,
            keep: Keep::default(),
            retention_days: default_retention_days(),
            early_upstream: default_early_upstream(),
        }
    }
}

impl GatewayConfig {
    /// The `[gateway]` section of the loaded config (kept aside by
    /// [`Config::load_with_surfaces`] with [`SECTION`]), or the defaults.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let section: Self = config.surface_section(SECTION)?.unwrap_or_default();
        section.validate()?;
        Ok(section)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.retention_days.is_finite()
            && self.retention_days > 0.0
            && self.retention_days <= 36_500.0)
        {
            return Err(invalid(
                "gateway.retention_days",
                self.retention_days.to_string(),
                "a number of days above 0, at most 36500",
            ));
        }
        Ok(())
    }

    /// How core starts each request's run.
    pub fn run_options(&self) -> GatewayRunOptions {
        GatewayRunOptions {
            keep: self.keep(),
            early_upstream: self.early_upstream,
        }
    }

    /// How core keeps each request.
    pub fn keep(&self) -> GatewayKeep {
        match self.keep {
            Keep::Conversations => GatewayKeep::Conversations,
            Keep::Runs => GatewayKeep::Runs {
                retention: Duration::from_secs_f64(self.retention_days * 86_400.0),
            },
        }
    }

    /// The section as TOML, for `chorus config show` (it holds no secret).
    pub fn to_toml(&self) -> String {
        format!(
            "[{SECTION}]\n{}",
            toml_body(self).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
        )
    }
}

fn toml_body(config: &GatewayConfig) -> Result<String, String> {
    let value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    // JSON's text of these values (booleans, numbers, strings) is valid TOML.
    let mut out = String::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn load(text: &str) -> Result<GatewayConfig, ConfigError> {
        let config = Config::from_toml_with_surfaces(text, &BTreeMap::new(), &[SECTION]).unwrap();
        GatewayConfig::from_config(&config)
    }

    #[test]
    fn defaults_keep_runs_for_thirty_days_and_never_cancel() {
        let c = load("").unwrap();
        assert!(c.enabled && !c.cancel_on_disconnect && c.early_upstream);
        assert_eq!(
            c.keep(),
            GatewayKeep::Runs {
                retention: Duration::from_secs(30 * 86_400)
            }
        );
        let shown = c.to_toml();
        assert!(
            shown.contains("keep = \"runs\"") && shown.contains("retention_days = 30"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let c = load(
            "[gateway]\nkeep = \"conversations\"\ncancel_on_disconnect = true\nearly_upstream = false\n",
        )
        .unwrap();
        assert_eq!(c.keep(), GatewayKeep::Conversations);
        assert!(!c.run_options().early_upstream);
        let e = load("[gateway]\nretention_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway.retention_days"), "{e}");
        let e = load("[gateway]\nkeep = \"forever\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway") && e.contains("keep"), "{e}");
    }
}
