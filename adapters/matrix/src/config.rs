//! The `[matrix]` section: the Matrix bot's account, who may talk to it, where it keeps
//! its session and crypto store, and how gently it streams by editing.

use chorus_core::chat::SinkLimits;
use chorus_core::config::Config;
use chorus_model::config::{ConfigError, invalid};
use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Matrix surface. Present means `chorus serve` logs in and answers on Matrix.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// Client-server API base URL of the bot's homeserver, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// The bot's full user id, e.g. `@chorus:example.org`. Its server name is the
    /// "own server" of the default allowlist.
    pub user_id: String,
    /// Password login (a new device on the first start, then the saved session).
    /// Exactly one of `password` and `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// An access token of an existing device (its device id is asked from the
    /// homeserver). Exactly one of `password` and `access_token`. The device must not
    /// have uploaded encryption keys from another client: this bot creates its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// Display name of the device a password login creates.
    #[serde(default = "default_device_name")]
    pub device_name: String,
    /// Text that addresses the bot in group rooms without a mention (`!chorus help`).
    #[serde(default = "default_command_prefix")]
    pub command_prefix: String,
    /// Matrix user ids allowed to talk to the bot and to invite it.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Server names whose users are allowed (`"*"`: every server).
    #[serde(default)]
    pub allowed_servers: Vec<String>,
    /// Every user of the bot's own homeserver may talk to it and invite it. Without
    /// it, `allowed_users` or `allowed_servers` must say who may: a bot is not open to
    /// everyone on a shared homeserver unless the config says so.
    #[serde(default)]
    pub allow_all: bool,
    /// Room ids the bot joins and answers in; empty: any room an allowed user invites it to.
    #[serde(default)]
    pub allowed_rooms: Vec<String>,
    /// Where the session (user, device, access token) and the SQLite state and crypto
    /// stores live; default `DATA_DIR/matrix`. Keep it across restarts: it holds the
    /// device's encryption keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<PathBuf>,
    /// Passphrase encrypting the SQLite stores at rest; unset, they are not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_passphrase: Option<Secret>,
    /// Smallest interval between two edits of a streaming reply, in ms (Matrix
    /// clients keep every edit; fewer is kinder).
    #[serde(default = "default_min_edit_interval_ms")]
    pub min_edit_interval_ms: u64,
    /// Edits of one message before only the final edit is sent.
    #[serde(default = "default_max_edits_per_message")]
    pub max_edits_per_message: u32,
    /// Most bytes of markdown in one message; longer replies continue in a new message.
    /// Capped so an edit (body and HTML, each twice, encrypted) stays under the 64 KiB
    /// event limit.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

/// The largest `max_message_bytes` accepted; see the matrix sink for the budget.
pub const MAX_MATRIX_MESSAGE_BYTES: usize = 8_000;

/// The name of the Matrix section in `chorus.toml`.
pub const SECTION: &str = "matrix";

fn default_device_name() -> String {
    "Chorus".into()
}

fn default_command_prefix() -> String {
    "!chorus".into()
}

fn default_min_edit_interval_ms() -> u64 {
    1200
}

fn default_max_edits_per_message() -> u32 {
    30
}

fn default_max_message_bytes() -> usize {
    MAX_MATRIX_MESSAGE_BYTES
}

impl MatrixConfig {
    /// The renderer's limits on Matrix.
    pub fn limits(&self) -> SinkLimits {
        SinkLimits {
            max_bytes: self.max_message_bytes,
            min_edit_interval: Duration::from_millis(self.min_edit_interval_ms),
            max_edits_per_message: self.max_edits_per_message,
        }
    }

    /// The `[matrix]` section of the loaded config (kept aside by
    /// [`Config::load_with_surfaces`] with [`SECTION`]), parsed and validated; `None`
    /// when the file has none, and then `chorus serve` does not connect to Matrix.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let section: Option<Self> = config.surface_section(SECTION)?;
        if let Some(matrix) = &section {
            matrix.validate()?;
        }
        Ok(section)
    }

    /// Settings a shared deployment would regret, one line each starting with the
    /// key (`chorus config check` prints them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.allow_all {
            warnings.push(format!(
                "matrix.allow_all = true: every user of {} may use the bot (and get an account)",
                self.own_server()
            ));
        }
        if self.allowed_servers.iter().any(|s| s == "*") {
            warnings.push(
                "matrix.allowed_servers contains \"*\": users of every Matrix server may use the bot"
                    .to_string(),
            );
        }
        warnings
    }

    /// The directory of the session file and the stores.
    pub fn store_dir(&self, data_dir: &Path) -> PathBuf {
        self.store_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("matrix"))
    }

    /// The server name of the bot's user id (`example.org` of `@chorus:example.org`).
    pub fn own_server(&self) -> &str {
        self.user_id.split_once(':').map_or("", |(_, s)| s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match url::Url::parse(&self.homeserver_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(invalid(
                    "matrix.homeserver_url",
                    &self.homeserver_url,
                    "an http:// or https:// URL, e.g. https://matrix.example.org",
                ));
            }
        }
        if !is_user_id(&self.user_id) {
            return Err(invalid(
                "matrix.user_id",
                &self.user_id,
                "a full Matrix user id, e.g. @chorus:example.org",
            ));
        }
        let password = self.password.as_ref().filter(|s| !s.is_empty());
        let token = self.access_token.as_ref().filter(|s| !s.is_empty());
        match (password, token) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Shape {
                    key: "matrix.password".into(),
                    message: "set either matrix.password or matrix.access_token, not both".into(),
                });
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    key: "matrix.password".into(),
                    why:
                        "the bot logs in with matrix.password or matrix.access_token (exactly one)"
                            .into(),
                });
            }
            _ => {}
        }
        if self.device_name.trim().is_empty() {
            return Err(invalid("matrix.device_name", "", "a non-empty name"));
        }
        let prefix = &self.command_prefix;
        if prefix.is_empty() || prefix.chars().any(char::is_whitespace) {
            return Err(invalid(
                "matrix.command_prefix",
                prefix,
                "a non-empty word without spaces, e.g. !chorus",
            ));
        }
        for (i, user) in self.allowed_users.iter().enumerate() {
            if !is_user_id(user) {
                return Err(invalid(
                    format!("matrix.allowed_users[{i}]"),
                    user,
                    "a full Matrix user id, e.g. @alice:example.org",
                ));
            }
        }
        for (i, server) in self.allowed_servers.iter().enumerate() {
            if server != "*" && !is_server_name(server) {
                return Err(invalid(
                    format!("matrix.allowed_servers[{i}]"),
                    server,
                    "a server name such as example.org (or \"*\" for every server)",
                ));
            }
        }
        if self.allowed_users.is_empty() && self.allowed_servers.is_empty() && !self.allow_all {
            return Err(ConfigError::Missing {
                key: "matrix.allowed_users".into(),
                why: "say who may talk to the bot: matrix.allowed_users (user ids), \
                      matrix.allowed_servers (server names), or matrix.allow_all = true \
                      (every user of its homeserver)"
                    .into(),
            });
        }
        for (i, room) in self.allowed_rooms.iter().enumerate() {
            if !(room.starts_with('!') && room.len() > 1) {
                return Err(invalid(
                    format!("matrix.allowed_rooms[{i}]"),
                    room,
                    "a room id starting with ! (aliases are not resolved)",
                ));
            }
        }
        if self.min_edit_interval_ms < 1000 {
            return Err(invalid(
                "matrix.min_edit_interval_ms",
                self.min_edit_interval_ms.to_string(),
                "at least 1000 ms (Matrix clients keep every edit)",
            ));
        }
        if self.max_edits_per_message == 0 {
            return Err(invalid(
                "matrix.max_edits_per_message",
                "0",
                "at least 1 (the final edit)",
            ));
        }
        if !(1000..=MAX_MATRIX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(invalid(
                "matrix.max_message_bytes",
                self.max_message_bytes.to_string(),
                &format!(
                    "between 1000 and {MAX_MATRIX_MESSAGE_BYTES} (an edit event must stay under 64 KiB)"
                ),
            ));
        }
        Ok(())
    }
}

/// `@localpart:server`, the shape every Matrix user id has (the SDK checks the rest).
/// The section as `chorus config check` shows it: TOML under `[matrix]`, with the
/// password, access token and store passphrase masked.
pub fn masked_toml(config: &MatrixConfig) -> String {
    let mut table = toml::Table::new();
    if let Ok(value) = toml::Value::try_from(config) {
        table.insert(SECTION.to_string(), value);
    }
    toml::to_string_pretty(&table).unwrap_or_default()
}

fn is_user_id(s: &str) -> bool {
    s.strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| {
            !local.is_empty() && is_server_name(server) && !s.chars().any(char::is_whitespace)
        })
}

/// A host name or IP literal, with an optional port.
fn is_server_name(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(['/', '@', ' '])
        && url::Url::parse(&format!("https://{s}/")).is_ok_and(|u| u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, MatrixConfig, SECTION};
    use chorus_core::config::Config;
    use std::collections::BTreeMap;

    /// Loads a whole config file as `chorus serve` does, with the Matrix section.
    fn load(
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(Config, Option<MatrixConfig>), ConfigError> {
        let config = Config::from_toml_with_surfaces(text, env, &[SECTION])?;
        let matrix = MatrixConfig::from_config(&config)?;
        Ok((config, matrix))
    }

    const BASE: &str = "[matrix]\nhomeserver_url = \"http://127.0.0.1:8008\"\n\
                        user_id = \"@bot:example.org\"\nallow_all = true\n";

    fn parse(extra: &str) -> Result<(Config, Option<MatrixConfig>), ConfigError> {
        load(&format!("{BASE}{extra}"), &BTreeMap::new())
    }

    #[test]
    fn defaults_apply_and_store_dir_is_under_data_dir() {
        let (c, m) = parse("password = \"pw\"").unwrap();
        let m = m.unwrap();
        assert_eq!(m.command_prefix, "!chorus");
        assert_eq!(m.min_edit_interval_ms, 1200);
        assert_eq!(m.max_edits_per_message, 30);
        assert_eq!(m.max_message_bytes, super::MAX_MATRIX_MESSAGE_BYTES);
        assert_eq!(
            m.limits(),
            chorus_core::chat::SinkLimits {
                max_bytes: super::MAX_MATRIX_MESSAGE_BYTES,
                min_edit_interval: std::time::Duration::from_millis(1200),
                max_edits_per_message: 30,
            }
        );
        assert_eq!(m.own_server(), "example.org");
        assert_eq!(
            m.store_dir(&c.data_dir()),
            std::path::Path::new("data/matrix")
        );
        assert!(load("", &BTreeMap::new()).unwrap().1.is_none());
    }

    #[test]
    fn exactly_one_credential_is_required() {
        let err = parse("").unwrap_err().to_string();
        assert!(
            err.contains("matrix.password") && err.contains("matrix.access_token"),
            "{err}"
        );
        let err = parse("password = \"a\"\naccess_token = \"b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        assert!(!err.contains("\"a\"") && !err.contains("\"b\""), "{err}");
        assert!(parse("access_token = \"syt_x\"").is_ok());
    }

    #[test]
    fn who_may_talk_to_the_bot_must_be_said() {
        let text = "[matrix]\nhomeserver_url = \"http://127.0.0.1:8008\"\n\
                    user_id = \"@bot:example.org\"\npassword = \"pw\"\n";
        let err = load(text, &BTreeMap::new()).unwrap_err().to_string();
        assert!(
            err.contains("matrix.allowed_users") && err.contains("matrix.allow_all"),
            "{err}"
        );
        for who in [
            "allowed_users = [\"@alice:example.org\"]",
            "allowed_servers = [\"example.org\"]",
            "allow_all = true",
        ] {
            assert!(
                load(&format!("{text}{who}\n"), &BTreeMap::new()).is_ok(),
                "{who}"
            );
        }
    }

    #[test]
    fn open_allowlists_are_warned_about() {
        let (_, m) = parse("password = \"pw\"").unwrap();
        let warnings = m.unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("matrix.allow_all"), "{warnings:?}");
        // Without `allow_all` (BASE sets it).
        let section = |who: &str| {
            let text = format!(
                "[matrix]\nhomeserver_url = \"http://127.0.0.1:8008\"\n\
                 user_id = \"@bot:example.org\"\npassword = \"pw\"\n{who}\n"
            );
            load(&text, &BTreeMap::new()).unwrap().1.unwrap()
        };
        let warnings = section("allowed_servers = [\"*\"]").warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("matrix.allowed_servers"),
            "{warnings:?}"
        );
        assert!(
            section("allowed_users = [\"@a:example.org\"]")
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            (
                "password='p'\nallowed_users=['alice']",
                "matrix.allowed_users[0]",
            ),
            (
                "password='p'\nallowed_servers=['a b']",
                "matrix.allowed_servers[0]",
            ),
            (
                "password='p'\nallowed_rooms=['#room:x']",
                "matrix.allowed_rooms[0]",
            ),
            (
                "password='p'\nmin_edit_interval_ms=200",
                "matrix.min_edit_interval_ms",
            ),
            (
                "password='p'\nmax_message_bytes=60000",
                "matrix.max_message_bytes",
            ),
            (
                "password='p'\ncommand_prefix='two words'",
                "matrix.command_prefix",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = load(
            "[matrix]\nhomeserver_url='matrix.org'\nuser_id='@b:x'\npassword='p'",
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("matrix.homeserver_url"), "{err}");
        let err = load(
            "[matrix]\nhomeserver_url='http://h'\nuser_id='bot'\npassword='p'",
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("matrix.user_id"), "{err}");
    }

    #[test]
    fn secrets_are_masked_in_the_dump() {
        let (_, m) = parse("password = \"hunter2\"\nstore_passphrase = \"s3cret\"").unwrap();
        let dump = super::masked_toml(&m.unwrap());
        assert!(
            !dump.contains("hunter2") && !dump.contains("s3cret"),
            "{dump}"
        );
        assert!(dump.contains("[matrix]"), "{dump}");
    }

    /// The example's commented `[matrix]` section, uncommented, is a valid section that
    /// names every key of [`super::MatrixConfig`].
    #[test]
    fn example_documents_every_matrix_key() {
        let example = include_str!("../../../chorus.example.toml");
        let section: String = example
            .lines()
            .skip_while(|l| l.trim() != "# [matrix]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# ").or(l.strip_prefix("#")))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            section.starts_with("[matrix]"),
            "no `# [matrix]` section:\n{section}"
        );
        let env: BTreeMap<String, String> =
            [("MATRIX_BOT_PASSWORD".to_string(), "pw".to_string())].into();
        let (_, matrix) = load(&section, &env).expect("the example [matrix] section");
        let mut matrix = matrix.expect("matrix section");
        matrix.access_token = Some(chorus_model::secret::Secret::new("t"));
        matrix.store_dir = Some("x".into());
        matrix.store_passphrase = Some(chorus_model::secret::Secret::new("p"));
        let keys = toml::to_string(&matrix).unwrap();
        for line in keys.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    example.contains(&format!("# {key} = ")),
                    "chorus.example.toml does not document matrix.{key}"
                );
            }
        }
    }
}
