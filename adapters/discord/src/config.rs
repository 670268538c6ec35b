//! The `[discord]` section: the bot's token, who may talk to it and where, where its
//! slash commands are registered, and how gently it streams by editing.

use chorus_core::chat::SinkLimits;
use chorus_core::config::Config;
use chorus_model::config::{ConfigError, invalid};
use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The name of the Discord section in `chorus.toml`.
pub const SECTION: &str = "discord";

/// Discord's limit on a message's content, in characters. Replies go in message
/// content rather than embeds: content renders the same markdown (code blocks
/// included), can be copied as text, and needs no embed permission; the 4,096 of an
/// embed description would only halve the number of messages of a very long reply.
pub const DISCORD_CONTENT_LIMIT: usize = 2_000;

/// Where Discord's API lives; `api_url` defaults to it.
pub const DISCORD_API_URL: &str = "https://discord.com";

/// The Discord surface. Present means `chorus serve` connects to Discord's gateway.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The bot token (Developer Portal → the application → Bot → Reset Token).
    pub token: Secret,
    /// Register the slash commands in these guilds only (they show at once there);
    /// empty: register them globally (Discord may take a while to show them).
    #[serde(default)]
    pub guild_ids: Vec<String>,
    /// Guilds the bot answers in; empty: every guild it has been added to.
    #[serde(default)]
    pub allowed_guilds: Vec<String>,
    /// Channels the bot answers in (a thread counts as its parent channel); empty:
    /// every channel it can read.
    #[serde(default)]
    pub allowed_channels: Vec<String>,
    /// Roles whose members may use the bot in a guild; with `allowed_users`, either
    /// admits. Both empty: everyone who can reach the bot.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// User ids who may use the bot (in guilds and in DMs).
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Text that starts a command in a message (`!chorus help`), beside the slash commands.
    #[serde(default = "default_command_prefix")]
    pub command_prefix: String,
    /// Ask for the privileged message-content intent (turn it on in the Developer
    /// Portal too). Without it the bot still reads DMs and messages that mention it,
    /// and slash commands work, but follow-ups in a thread need a mention.
    #[serde(default = "yes")]
    pub message_content_intent: bool,
    /// Smallest interval between two edits of a streaming reply, in ms (Discord allows
    /// about five edits per five seconds in a channel).
    #[serde(default = "default_min_edit_interval_ms")]
    pub min_edit_interval_ms: u64,
    /// Edits of one message before only the final edit is sent.
    #[serde(default = "default_max_edits_per_message")]
    pub max_edits_per_message: u32,
    /// Most characters in one message (Discord allows 2,000); longer replies go on in
    /// the next message. Counted in UTF-8 bytes, which are never fewer than characters.
    #[serde(default = "default_max_message_chars")]
    pub max_message_chars: usize,
    /// How long `chorus serve` waits for the gateway's READY before it reports the
    /// surface down.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Base URL of Discord's API, for tests against a local fake only: when it is not
    /// Discord's, every REST call goes there (serenity's proxy setting, its rate
    /// limiter off) and the gateway is the one its `GET /api/v10/gateway` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_command_prefix() -> String {
    "!chorus".into()
}

fn default_min_edit_interval_ms() -> u64 {
    1000
}

fn default_max_edits_per_message() -> u32 {
    60
}

fn default_max_message_chars() -> usize {
    DISCORD_CONTENT_LIMIT
}

fn default_connect_timeout_secs() -> u64 {
    30
}

impl DiscordConfig {
    /// Valid settings a shared deployment would regret, one line each starting with
    /// the key (printed by `chorus config check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.allowed_guilds.is_empty()
            && self.allowed_channels.is_empty()
            && self.allowed_roles.is_empty()
            && self.allowed_users.is_empty()
        {
            warnings.push(
                "discord.allowed_guilds and the other allowlists (channels, roles, users) are empty: \
                 everyone in every guild the bot is added to, and anyone who DMs it, may use it (and get an account)"
                    .to_string(),
            );
        }
        if self.api_url.is_some() {
            warnings.push(
                "discord.api_url is set: the bot talks to that server instead of Discord (tests only)"
                    .to_string(),
            );
        }
        warnings
    }

    /// The renderer's limits on Discord.
    pub fn limits(&self) -> SinkLimits {
        SinkLimits {
            max_bytes: self.max_message_chars,
            min_edit_interval: Duration::from_millis(self.min_edit_interval_ms),
            max_edits_per_message: self.max_edits_per_message,
        }
    }

    /// The `[discord]` section of the loaded config (kept aside by
    /// [`Config::load_with_surfaces`] with [`SECTION`]), parsed and validated; `None`
    /// when the file has none, and then `chorus serve` does not connect to Discord.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let section: Option<Self> = config.surface_section(SECTION)?;
        if let Some(discord) = &section {
            discord.validate()?;
        }
        Ok(section)
    }

    /// The API base URL in use (Discord's unless overridden for tests).
    pub fn api_url(&self) -> &str {
        self.api_url
            .as_deref()
            .unwrap_or(DISCORD_API_URL)
            .trim_end_matches('/')
    }

    /// Whether the API is a stand-in (a test's fake), not Discord.
    pub fn is_api_overridden(&self) -> bool {
        self.api_url() != DISCORD_API_URL
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let token = self.token.expose();
        if token.trim().is_empty() {
            return Err(ConfigError::Missing {
                key: "discord.token".into(),
                why: "the bot logs in with its token (Developer Portal → Bot)".into(),
            });
        }
        if token.chars().any(char::is_whitespace) || token.starts_with("Bot ") {
            return Err(ConfigError::Shape {
                key: "discord.token".into(),
                message: "the bare bot token, without spaces or a `Bot ` prefix".into(),
            });
        }
        for (key, ids) in [
            ("guild_ids", &self.guild_ids),
            ("allowed_guilds", &self.allowed_guilds),
            ("allowed_channels", &self.allowed_channels),
            ("allowed_roles", &self.allowed_roles),
            ("allowed_users", &self.allowed_users),
        ] {
            for (i, id) in ids.iter().enumerate() {
                if !is_snowflake(id) {
                    return Err(invalid(
                        format!("discord.{key}[{i}]"),
                        id,
                        "a Discord id (a number such as \"80351110224678912\"; Developer Mode → Copy ID)",
                    ));
                }
            }
        }
        let prefix = &self.command_prefix;
        if prefix.is_empty() || prefix.chars().any(char::is_whitespace) || prefix.starts_with('/') {
            return Err(invalid(
                "discord.command_prefix",
                prefix,
                "a non-empty word without spaces that does not start with / (slash commands are Discord's), e.g. !chorus",
            ));
        }
        if self.min_edit_interval_ms < 200 {
            return Err(invalid(
                "discord.min_edit_interval_ms",
                self.min_edit_interval_ms.to_string(),
                "at least 200 ms (Discord rate-limits edits to about one a second per channel)",
            ));
        }
        if self.max_edits_per_message == 0 {
            return Err(invalid(
                "discord.max_edits_per_message",
                "0",
                "at least 1 (the final edit)",
            ));
        }
        if !(200..=DISCORD_CONTENT_LIMIT).contains(&self.max_message_chars) {
            return Err(invalid(
                "discord.max_message_chars",
                self.max_message_chars.to_string(),
                &format!("between 200 and {DISCORD_CONTENT_LIMIT} (Discord's limit)"),
            ));
        }
        if !(1..=600).contains(&self.connect_timeout_secs) {
            return Err(invalid(
                "discord.connect_timeout_secs",
                self.connect_timeout_secs.to_string(),
                "between 1 and 600",
            ));
        }
        if let Some(url) = &self.api_url {
            match url::Url::parse(url) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.path().trim_end_matches('/').is_empty() => {}
                _ => {
                    return Err(invalid(
                        "discord.api_url",
                        url,
                        "an http:// or https:// origin without a path, e.g. http://127.0.0.1:3000 (tests only)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A Discord id: a decimal snowflake that fits in 64 bits and is not zero.
pub fn is_snowflake(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.chars().all(|c| c.is_ascii_digit())
        && s.parse::<u64>().is_ok_and(|n| n > 0)
}

/// The section as `chorus config check` shows it: TOML under `[discord]`, with the
/// token masked.
pub fn masked_toml(config: &DiscordConfig) -> String {
    let mut table = toml::Table::new();
    if let Ok(value) = toml::Value::try_from(config) {
        table.insert(SECTION.to_string(), value);
    }
    toml::to_string_pretty(&table).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, DiscordConfig, SECTION};
    use chorus_core::config::Config;
    use std::collections::BTreeMap;

    fn load(
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(Config, Option<DiscordConfig>), ConfigError> {
        let config = Config::from_toml_with_surfaces(text, env, &[SECTION])?;
        let discord = DiscordConfig::from_config(&config)?;
        Ok((config, discord))
    }

    fn parse(extra: &str) -> Result<Option<DiscordConfig>, ConfigError> {
        load(
            &format!("[discord]\ntoken = \"abc.def.ghi\"\n{extra}"),
            &BTreeMap::new(),
        )
        .map(|(_, d)| d)
    }

    #[test]
    fn open_allowlists_and_a_test_api_url_are_warned_about() {
        let open = parse("").unwrap().unwrap().warnings();
        assert!(
            open.len() == 1 && open[0].starts_with("discord.allowed_guilds"),
            "{open:?}"
        );
        let closed = parse("allowed_guilds = [\"123\"]").unwrap().unwrap();
        assert!(closed.warnings().is_empty(), "{:?}", closed.warnings());
        let fake = parse("allowed_users = [\"1\"]\napi_url = \"http://127.0.0.1:9\"")
            .unwrap()
            .unwrap()
            .warnings();
        assert!(
            fake.len() == 1 && fake[0].starts_with("discord.api_url"),
            "{fake:?}"
        );
    }

    #[test]
    fn defaults_apply() {
        let d = parse("").unwrap().unwrap();
        assert_eq!(d.command_prefix, "!chorus");
        assert!(d.message_content_intent);
        assert_eq!(
            d.limits(),
            chorus_core::chat::SinkLimits {
                max_bytes: 2000,
                min_edit_interval: std::time::Duration::from_millis(1000),
                max_edits_per_message: 60,
            }
        );
        assert_eq!(d.api_url(), "https://discord.com");
        assert!(!d.is_api_overridden());
        assert!(load("", &BTreeMap::new()).unwrap().1.is_none());
    }

    #[test]
    fn the_token_is_required_and_bare() {
        let err = load("[discord]\nguild_ids=[]", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
        let err = load("[discord]\ntoken=''", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("discord.token"), "{err}");
        let err = load("[discord]\ntoken='Bot abc'", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("discord.token") && !err.contains("abc"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("guild_ids=['abc']", "discord.guild_ids[0]"),
            ("allowed_guilds=['1','x']", "discord.allowed_guilds[1]"),
            ("allowed_channels=['0']", "discord.allowed_channels[0]"),
            ("allowed_roles=['-5']", "discord.allowed_roles[0]"),
            (
                "allowed_users=['99999999999999999999999']",
                "discord.allowed_users[0]",
            ),
            ("command_prefix='/chorus'", "discord.command_prefix"),
            ("command_prefix='a b'", "discord.command_prefix"),
            ("min_edit_interval_ms=50", "discord.min_edit_interval_ms"),
            ("max_edits_per_message=0", "discord.max_edits_per_message"),
            ("max_message_chars=4000", "discord.max_message_chars"),
            ("connect_timeout_secs=0", "discord.connect_timeout_secs"),
            ("api_url='ftp://x'", "discord.api_url"),
            ("api_url='http://127.0.0.1:9/api'", "discord.api_url"),
            ("unknown_key=1", "unknown_key"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let d = parse("api_url='http://127.0.0.1:9/'\nallowed_users=['80351110224678912']")
            .unwrap()
            .unwrap();
        assert_eq!(d.api_url(), "http://127.0.0.1:9");
        assert!(d.is_api_overridden());
    }

    #[test]
    fn the_token_is_masked_in_the_dump() {
        let d = parse("").unwrap().unwrap();
        let dump = super::masked_toml(&d);
        assert!(!dump.contains("abc.def.ghi"), "{dump}");
        assert!(dump.contains("[discord]"), "{dump}");
    }

    /// The example's commented `[discord]` section, uncommented, is a valid section
    /// that names every key of [`super::DiscordConfig`].
    #[test]
    fn example_documents_every_discord_key() {
        let example = include_str!("../../../chorus.example.toml");
        let section: String = example
            .lines()
            .skip_while(|l| l.trim() != "# [discord]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# ").or(l.strip_prefix("#")))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            section.starts_with("[discord]"),
            "no `# [discord]` section:\n{section}"
        );
        let env: BTreeMap<String, String> =
            [("DISCORD_BOT_TOKEN".to_string(), "t.o.k".to_string())].into();
        let (_, discord) = load(&section, &env).expect("the example [discord] section");
        let mut discord = discord.expect("discord section");
        discord.api_url = Some("http://127.0.0.1:1".into());
        let keys = toml::to_string(&discord).unwrap();
        for line in keys.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    example.contains(&format!("# {key} = ")),
                    "chorus.example.toml does not document discord.{key}"
                );
            }
        }
    }
}
