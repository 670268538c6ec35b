//! The `[slack]` section: the app's tokens, how Slack reaches it (Socket Mode or the
//! Events API), who may talk to it, and how gently it streams by editing.

use chorus_core::chat::SinkLimits;
use chorus_core::config::Config;
use chorus_model::config::{ConfigError, invalid};
use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The name of the Slack section in `chorus.toml`.
pub const SECTION: &str = "slack";

/// Slack's Web API; the only URL production uses.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// The most bytes of markdown in one message: Slack renders at most 12,000
/// characters of `markdown` blocks per message (a byte is never more than a character).
pub const MAX_SLACK_MESSAGE_BYTES: usize = 12_000;

/// How Slack delivers events to the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One WebSocket the app opens (`apps.connections.open`): no public URL needed.
    #[default]
    Socket,
    /// HTTP requests from Slack to `/slack/events`, `/slack/interactions` and
    /// `/slack/commands` on Chorus's own listener, signed with the signing secret.
    Events,
}

/// The Slack surface. Present means `chorus serve` connects the app to Slack.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`) every Web API call is made with.
    pub bot_token: Secret,
    /// `socket` (default) or `events`.
    #[serde(default)]
    pub mode: Mode,
    /// The app-level token (`xapp-…`, scope `connections:write`) Socket Mode connects
    /// with; required in `socket` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_token: Option<Secret>,
    /// The signing secret Events API requests are verified with; required in
    /// `events` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret>,
    /// Workspace (team) ids whose people may use the app; empty: any workspace the
    /// app is installed in.
    #[serde(default)]
    pub allowed_workspaces: Vec<String>,
    /// Channel ids the app answers in (DMs with the app always count); empty: any.
    #[serde(default)]
    pub allowed_channels: Vec<String>,
    /// Slack user ids allowed to talk to the app; empty: everyone in an allowed
    /// workspace.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Stream replies in threads with Slack's native streaming methods
    /// (`chat.startStream` …); off, or where Slack refuses them, replies stream by
    /// `chat.update`.
    #[serde(default = "default_native_streaming")]
    pub native_streaming: bool,
    /// Smallest interval between two edits (or stream appends) of one reply, in ms.
    #[serde(default = "default_min_edit_interval_ms")]
    pub min_edit_interval_ms: u64,
    /// Smallest interval between two `chat.update` calls of the whole workspace, in
    /// ms: Slack allows about 50 a minute, shared by every reply being written.
    #[serde(default = "default_update_interval_ms")]
    pub update_interval_ms: u64,
    /// Edits of one message before only the final edit is sent.
    #[serde(default = "default_max_edits_per_message")]
    pub max_edits_per_message: u32,
    /// Most bytes of markdown in one message; longer replies continue in a new one.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long `chorus serve` waits for Slack at start (auth, the first socket).
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// The Web API base URL. Leave it: it exists so tests can point the app at a
    /// fake Slack on loopback (plain `http://` is accepted for loopback hosts only).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_native_streaming() -> bool {
    true
}

fn default_min_edit_interval_ms() -> u64 {
    1000
}

fn default_update_interval_ms() -> u64 {
    1200
}

fn default_max_edits_per_message() -> u32 {
    40
}

fn default_max_message_bytes() -> usize {
    MAX_SLACK_MESSAGE_BYTES
}

fn default_connect_timeout_secs() -> u64 {
    20
}

fn default_api_url() -> String {
    SLACK_API_URL.into()
}

impl SlackConfig {
    /// Valid settings a shared deployment would regret, one line each starting with
    /// the key (printed by `chorus config check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.allowed_workspaces.is_empty()
            && self.allowed_channels.is_empty()
            && self.allowed_users.is_empty()
        {
            warnings.push(
                "slack.allowed_workspaces and the other allowlists (channels, users) are empty: \
                 everyone in every workspace the app is installed in may use it (and get an account)"
                    .to_string(),
            );
        }
        if self.api_url != SLACK_API_URL {
            warnings.push(
                "slack.api_url is set: the app talks to that server instead of Slack (tests only)"
                    .to_string(),
            );
        }
        warnings
    }

    /// The renderer's limits on Slack.
    pub fn limits(&self) -> SinkLimits {
        SinkLimits {
            max_bytes: self.max_message_bytes,
            min_edit_interval: Duration::from_millis(self.min_edit_interval_ms),
            max_edits_per_message: self.max_edits_per_message,
        }
    }

    /// The `[slack]` section of the loaded config, parsed and validated; `None` when
    /// the file has none, and then `chorus serve` does not connect to Slack.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let section: Option<Self> = config.surface_section(SECTION)?;
        if let Some(slack) = &section {
            slack.validate()?;
        }
        Ok(section)
    }

    /// The Web API base URL without a trailing `/` (methods are `{base}/{method}`).
    pub fn api_base(&self) -> String {
        self.api_url.trim_end_matches('/').to_string()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.bot_token.expose().starts_with("xoxb-") {
            return Err(ConfigError::Shape {
                key: "slack.bot_token".into(),
                message: "expected a bot token starting with xoxb- (OAuth & Permissions)".into(),
            });
        }
        match self.mode {
            Mode::Socket => match &self.app_token {
                Some(t) if t.expose().starts_with("xapp-") => {}
                Some(_) => {
                    return Err(ConfigError::Shape {
                        key: "slack.app_token".into(),
                        message: "expected an app-level token starting with xapp- (Basic \
                                  Information → App-Level Tokens, scope connections:write)"
                            .into(),
                    });
                }
                None => {
                    return Err(ConfigError::Missing {
                        key: "slack.app_token".into(),
                        why: "Socket Mode (slack.mode = \"socket\", the default) connects with an \
                              app-level token"
                            .into(),
                    });
                }
            },
            Mode::Events => {
                if self.signing_secret.as_ref().is_none_or(Secret::is_empty) {
                    return Err(ConfigError::Missing {
                        key: "slack.signing_secret".into(),
                        why: "the Events API (slack.mode = \"events\") verifies every request \
                              with the app's signing secret"
                            .into(),
                    });
                }
            }
        }
        for (key, list, first) in [
            ("allowed_workspaces", &self.allowed_workspaces, 'T'),
            ("allowed_users", &self.allowed_users, 'U'),
        ] {
            for (i, id) in list.iter().enumerate() {
                if !is_slack_id(id) {
                    return Err(invalid(
                        format!("slack.{key}[{i}]"),
                        id,
                        &format!(
                            "a Slack id such as {first}0123ABCD (upper-case letters and digits)"
                        ),
                    ));
                }
            }
        }
        for (i, id) in self.allowed_channels.iter().enumerate() {
            if !is_slack_id(id) {
                return Err(invalid(
                    format!("slack.allowed_channels[{i}]"),
                    id,
                    "a channel id such as C0123ABCD (not a #name)",
                ));
            }
        }
        if self.min_edit_interval_ms < 100 {
            return Err(invalid(
                "slack.min_edit_interval_ms",
                self.min_edit_interval_ms.to_string(),
                "at least 100 ms",
            ));
        }
        if self.update_interval_ms < 10 {
            return Err(invalid(
                "slack.update_interval_ms",
                self.update_interval_ms.to_string(),
                "at least 10 ms (Slack allows about 50 chat.update calls a minute: 1200)",
            ));
        }
        if self.max_edits_per_message == 0 {
            return Err(invalid(
                "slack.max_edits_per_message",
                "0",
                "at least 1 (the final edit)",
            ));
        }
        if !(500..=MAX_SLACK_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(invalid(
                "slack.max_message_bytes",
                self.max_message_bytes.to_string(),
                &format!(
                    "between 500 and {MAX_SLACK_MESSAGE_BYTES} (Slack renders at most 12,000 \
                     characters of markdown per message)"
                ),
            ));
        }
        if !(1..=600).contains(&self.connect_timeout_secs) {
            return Err(invalid(
                "slack.connect_timeout_secs",
                self.connect_timeout_secs.to_string(),
                "between 1 and 600",
            ));
        }
        let url_ok = match url::Url::parse(&self.api_url) {
            Ok(u) => match u.scheme() {
                "https" => u.host().is_some(),
                "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
                _ => false,
            },
            Err(_) => false,
        };
        if !url_ok {
            return Err(invalid(
                "slack.api_url",
                &self.api_url,
                "an https:// URL (plain http:// only on loopback, for tests); leave it unset \
                 for Slack",
            ));
        }
        Ok(())
    }
}

/// The section as `chorus config check` shows it: TOML under `[slack]`, with the
/// tokens and the signing secret masked.
pub fn masked_toml(config: &SlackConfig) -> String {
    let mut table = toml::Table::new();
    if let Ok(value) = toml::Value::try_from(config) {
        table.insert(SECTION.to_string(), value);
    }
    toml::to_string_pretty(&table).unwrap_or_default()
}

/// Slack ids (teams, users, channels) are upper-case letters and digits.
fn is_slack_id(s: &str) -> bool {
    s.len() >= 2
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, Mode, SECTION, SlackConfig};
    use chorus_core::config::Config;
    use std::collections::BTreeMap;

    fn load(
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(Config, Option<SlackConfig>), ConfigError> {
        let config = Config::from_toml_with_surfaces(text, env, &[SECTION])?;
        let slack = SlackConfig::from_config(&config)?;
        Ok((config, slack))
    }

    fn parse(extra: &str) -> Result<SlackConfig, ConfigError> {
        load(
            &format!("[slack]\nbot_token = \"xoxb-1\"\n{extra}"),
            &BTreeMap::new(),
        )
        .map(|(_, s)| s.expect("slack section"))
    }

    #[test]
    fn open_allowlists_and_a_test_api_url_are_warned_about() {
        let open = parse("app_token = \"xapp-1\"").unwrap().warnings();
        assert!(
            open.len() == 1 && open[0].starts_with("slack.allowed_workspaces"),
            "{open:?}"
        );
        let closed = parse("app_token = \"xapp-1\"\nallowed_users = [\"U0123ABCD\"]").unwrap();
        assert!(closed.warnings().is_empty(), "{:?}", closed.warnings());
    }

    #[test]
    fn socket_mode_is_the_default_and_needs_an_app_token() {
        let s = parse("app_token = \"xapp-1\"").unwrap();
        assert_eq!(s.mode, Mode::Socket);
        assert_eq!(s.api_base(), super::SLACK_API_URL);
        assert_eq!(s.limits().max_bytes, super::MAX_SLACK_MESSAGE_BYTES);
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("slack.app_token"), "{err}");
        let err = parse("app_token = \"xoxb-wrong\"").unwrap_err().to_string();
        assert!(
            err.contains("xapp-") && !err.contains("xoxb-wrong"),
            "{err}"
        );
        assert!(load("", &BTreeMap::new()).unwrap().1.is_none());
    }

    #[test]
    fn events_mode_needs_a_signing_secret() {
        let err = parse("mode = \"events\"").unwrap_err().to_string();
        assert!(err.contains("slack.signing_secret"), "{err}");
        assert!(parse("mode = \"events\"\nsigning_secret = \"s\"").is_ok());
        let err = load(
            "[slack]\nbot_token = \"xapp-1\"\nmode = \"events\"\nsigning_secret = \"s\"",
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("slack.bot_token") && !err.contains("xapp-1"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("allowed_users = ['alice']", "slack.allowed_users[0]"),
            (
                "allowed_channels = ['#general']",
                "slack.allowed_channels[0]",
            ),
            (
                "allowed_workspaces = ['acme']",
                "slack.allowed_workspaces[0]",
            ),
            ("min_edit_interval_ms = 5", "slack.min_edit_interval_ms"),
            ("max_message_bytes = 40000", "slack.max_message_bytes"),
            ("max_edits_per_message = 0", "slack.max_edits_per_message"),
            ("api_url = 'http://slack.example.com/api/'", "slack.api_url"),
        ] {
            let err = parse(&format!("app_token = 'xapp-1'\n{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        assert!(parse("app_token = 'xapp-1'\napi_url = 'http://127.0.0.1:9/api'").is_ok());
    }

    #[test]
    fn secrets_are_masked_in_the_dump() {
        let s = parse("app_token = \"xapp-s3cret\"\nsigning_secret = \"sig-s3cret\"").unwrap();
        let dump = super::masked_toml(&s);
        assert!(
            !dump.contains("s3cret") && !dump.contains("xoxb-1"),
            "{dump}"
        );
        assert!(dump.contains("[slack]"), "{dump}");
    }

    /// The example's commented `[slack]` section, uncommented, is a valid section that
    /// names every key of [`super::SlackConfig`].
    #[test]
    fn example_documents_every_slack_key() {
        let example = include_str!("../../../chorus.example.toml");
        let section: String = example
            .lines()
            .skip_while(|l| l.trim() != "# [slack]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# ").or(l.strip_prefix("#")))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            section.starts_with("[slack]"),
            "no `# [slack]` section:\n{section}"
        );
        let env: BTreeMap<String, String> =
            [("SLACK_BOT_TOKEN", "xoxb-x"), ("SLACK_APP_TOKEN", "xapp-x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let (_, slack) = load(&section, &env).expect("the example [slack] section");
        let mut slack = slack.expect("slack section");
        slack.signing_secret = Some(chorus_model::secret::Secret::new("s"));
        let keys = toml::to_string(&slack).unwrap();
        for line in keys.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    example.contains(&format!("# {key} = ")),
                    "chorus.example.toml does not document slack.{key}"
                );
            }
        }
    }
}
