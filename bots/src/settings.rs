//! Everything `chorus` reads at start: core's configuration and each surface's own
//! section, parsed and validated by the surface's crate. The binary is the only place
//! that knows every surface, so this is where their sections are gathered.

use chorus_core::config::{Config, ConfigError};
use chorus_discord::config::DiscordConfig;
use chorus_gateway::config::GatewayConfig;
use chorus_matrix::config::MatrixConfig;
use chorus_slack::config::SlackConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// The sections owned by surfaces; core keeps them aside for their crates.
const SURFACE_SECTIONS: &[&str] = &[
    chorus_matrix::config::SECTION,
    chorus_gateway::config::SECTION,
    chorus_discord::config::SECTION,
    chorus_slack::config::SECTION,
];

/// Core's configuration plus every surface's section.
pub struct Settings {
    pub core: Config,
    /// `[matrix]`; absent, `chorus serve` does not connect to Matrix.
    pub matrix: Option<MatrixConfig>,
    /// `[gateway]`, the OpenAI- and Anthropic-compatible API (served by default).
    pub gateway: GatewayConfig,
    /// `[discord]`; absent, `chorus serve` does not connect to Discord.
    pub discord: Option<DiscordConfig>,
    /// `[slack]`; absent, `chorus serve` does not connect to Slack.
    pub slack: Option<SlackConfig>,
}

impl Settings {
    /// Reads the file (if any) with environment overrides and validates every section.
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let core = Config::load_with_surfaces(path, env, SURFACE_SECTIONS)?;
        Self::from_core(core)
    }

    fn from_core(core: Config) -> Result<Self, ConfigError> {
        let matrix = MatrixConfig::from_config(&core)?;
        let gateway = GatewayConfig::from_config(&core)?;
        let discord = DiscordConfig::from_config(&core)?;
        let slack = SlackConfig::from_config(&core)?;
        Ok(Self {
            core,
            matrix,
            gateway,
            discord,
            slack,
        })
    }

    /// Valid settings a shared deployment would regret, every section's, one line
    /// each starting with the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.core.warnings();
        if let Some(matrix) = &self.matrix {
            warnings.extend(matrix.warnings());
        }
        if let Some(discord) = &self.discord {
            warnings.extend(discord.warnings());
        }
        if let Some(slack) = &self.slack {
            warnings.extend(slack.warnings());
        }
        warnings
    }

    /// The effective configuration, every section included, with secrets masked.
    pub fn masked_toml(&self) -> String {
        let mut text = self.core.masked_toml();
        if let Some(matrix) = &self.matrix {
            text.push('\n');
            text.push_str(&chorus_matrix::config::masked_toml(matrix));
        }
        text.push('\n');
        text.push_str(&self.gateway.to_toml());
        if let Some(discord) = &self.discord {
            text.push('\n');
            text.push_str(&chorus_discord::config::masked_toml(discord));
        }
        if let Some(slack) = &self.slack {
            text.push('\n');
            text.push_str(&chorus_slack::config::masked_toml(slack));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed example with its commented `[matrix]`, `[gateway]`, `[discord]` and
    /// `[slack]` sections turned on: valid for core and for each surface, and dumped with its secrets
    /// masked.
    #[test]
    fn example_config_with_the_surface_sections_is_valid() {
        let example = include_str!("../../chorus.example.toml");
        let mut text = String::new();
        let mut in_section = false;
        for line in example.lines() {
            if ["# [matrix]", "# [gateway]", "# [discord]", "# [slack]"].contains(&line.trim()) {
                in_section = true;
            } else if in_section && !line.starts_with('#') {
                in_section = false;
            }
            let line = match line.strip_prefix("# ") {
                Some(rest) if in_section && !rest.starts_with('#') => rest,
                _ => line,
            };
            text.push_str(line);
            text.push('\n');
        }
        let env: BTreeMap<String, String> = [
            ("OPENAI_API_KEY", "sk-x"),
            ("MATRIX_BOT_PASSWORD", "pw"),
            ("DISCORD_BOT_TOKEN", "tok.en"),
            ("SLACK_BOT_TOKEN", "xoxb-s3cret"),
            ("SLACK_APP_TOKEN", "xapp-s3cret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let core =
            Config::from_toml_with_surfaces(&text, &env, SURFACE_SECTIONS).expect("example config");
        let settings = Settings::from_core(core).expect("example surface sections");
        assert!(
            settings.matrix.is_some() && settings.discord.is_some() && settings.slack.is_some()
        );
        assert_eq!(
            settings.gateway.keep,
            chorus_gateway::config::Keep::Runs,
            "example [gateway] section"
        );
        let dump = settings.masked_toml();
        assert!(
            dump.contains("[matrix]") && dump.contains("[gateway]") && !dump.contains("\"pw\""),
            "{dump}"
        );
        assert!(
            dump.contains("[discord]") && !dump.contains("tok.en"),
            "{dump}"
        );
        assert!(
            dump.contains("[slack]") && !dump.contains("s3cret"),
            "{dump}"
        );
    }
}
