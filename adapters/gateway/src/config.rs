//! The `[gateway]` section: whether the OpenAI- and Anthropic-compatible API is
//! served, and what a dropped client does to its run.

use chorus_core::config::Config;
use chorus_model::config::ConfigError;
use serde::{Deserialize, Serialize};

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
}

fn default_enabled() -> bool {
    true
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            cancel_on_disconnect: false,
        }
    }
}

impl GatewayConfig {
    /// The `[gateway]` section of the loaded config (kept aside by
    /// [`Config::load_with_surfaces`] with [`SECTION`]), or the defaults.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(config.surface_section(SECTION)?.unwrap_or_default())
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
    let mut out = String::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    Ok(out)
}
