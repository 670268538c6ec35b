//! The one typed configuration: defaults, then a TOML file, then `CHORUS_*` environment
//! overrides, then validation that names the key, the value and what was expected.
//!
//! Loading is pure (file text and environment map in, [`Config`] out) so every rule
//! here is unit-tested without touching the process environment.

#[cfg(test)]
mod provider_tests;

use chorus_model::secret::{Secret, mask_url_password};

mod env;
mod quota;
pub use crate::sso::config::{OAuth2Kind, OAuth2ProviderConfig, OidcKind, OidcProviderConfig};
pub use chorus_providers::config::{
    AliasConfig, DEFAULT_AZURE_API_VERSION, ModelMeta, ProviderConfig, ProviderKind,
};
pub use quota::{AccountsConfig, LimitsConfig, OnStoreError, QuotaConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything Chorus reads at start. Every field has a usable default, so an empty
/// file (or none) gives a working single-instance server.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub journal: JournalConfig,
    pub engine: EngineConfig,
    pub auth: AuthConfig,
    /// What new accounts start with.
    pub accounts: AccountsConfig,
    /// Balances, prices and auto-refill.
    pub quota: QuotaConfig,
    /// Per-account rate and concurrency limits, and limits on guessing.
    pub limits: LimitsConfig,
    pub providers: Vec<ProviderConfig>,
    /// Model aliases naming an ordered fallback chain of `provider/model`s.
    pub aliases: Vec<AliasConfig>,
    /// The code sandbox (`code_interpreter` tool): Docker images and limits.
    pub sandbox: crate::sandbox::SandboxConfig,
    /// MCP servers whose tools models may call.
    pub mcp: crate::mcp::McpConfig,
    /// Limits of the engine's tool loop.
    pub tools: crate::mcp::ToolsConfig,
    /// Metrics, traces and the log format.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Which models and tool servers each role may use by default (the admin
    /// console's Access page overrides it).
    pub access: crate::access::AccessConfig,
    /// The sections chat surfaces own (`[matrix]`, `[discord]`, `[slack]`), taken out
    /// of the file as TOML after environment overrides and `${VAR}` references, for the
    /// surface's own crate to parse and validate ([`Config::surface_section`]): core
    /// knows no surface's settings.
    #[serde(skip)]
    pub surface_sections: SurfaceSections,
    /// Directory for the embedded SQLite database (when `database.url` is unset).
    pub data_dir: Option<PathBuf>,
}

/// Surface sections as read from the file, secrets unmasked until their surface parses
/// them into types that mask them; so `Debug` names the sections and nothing more.
#[derive(Clone, Default)]
pub struct SurfaceSections(BTreeMap<String, toml::Value>);

impl std::fmt::Debug for SurfaceSections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds, e.g. `127.0.0.1:3000`.
    pub listen: String,
    /// Stable name of this instance, used as the owner of run leases. Defaults to
    /// the host name plus the listen address, so a restarted instance recognises the
    /// runs it owned before it died.
    pub instance_id: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the
    /// client; from any other peer the header is ignored and the socket address is
    /// the client. Empty: no proxy is trusted.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Longest a request may take before its response starts, in seconds; a slower
    /// one gets 503 `timeout`. Event streams, once started, are not cut.
    pub request_timeout_secs: u64,
    /// Event streams (`GET /api/runs/{id}/events`) one account may hold open on an
    /// instance at once; one more gets 429 `too_many_streams`.
    pub max_streams_per_account: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
            instance_id: None,
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
            max_streams_per_account: 16,
        }
    }
}

impl ServerConfig {
    /// The client of a request that reached us from `peer` with these
    /// `X-Forwarded-For` values: the peer itself unless it is a trusted proxy;
    /// otherwise the right-most forwarded address that is not a trusted proxy (each
    /// proxy appends the address it received the request from, so the addresses left
    /// of the first untrusted one are the client's to forge).
    pub fn client_ip<'a>(
        &self,
        peer: std::net::IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> std::net::IpAddr {
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted_proxy(ip) {
                        break;
                    }
                }
                // Garbage in the chain: the last address we could trust stands.
                Err(_) => break,
            }
        }
        client
    }

    fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.0.contains(&ip))
    }
}

/// An address or CIDR range in `server.trusted_proxies` (`10.0.0.1`, `10.0.0.0/8`,
/// `::1`), kept as the text it was written as.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyNet(ipnet::IpNet);

impl std::str::FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(|net| ProxyNet(net.trunc()))
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range such as 10.0.0.0/8"))
    }
}

impl<'de> Deserialize<'de> for ProxyNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ProxyNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://DATA_DIR/chorus.db`.
    pub url: Option<Secret>,
    /// Upper bound of pooled connections.
    pub max_connections: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Redis URL; when absent the journal is in-process (one instance only).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How long a finished run's events stay readable from the journal, in seconds.
    pub retention_secs: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "chorus:".into(),
            retention_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Model used when a request names none, as `provider/model`.
    pub default_model: Option<String>,
    /// How long a run lease lasts without renewal before another instance may mark
    /// the run interrupted, in seconds.
    pub lease_ttl_secs: u64,
    /// Smallest interval between two checkpoints of a streaming run's text, in ms.
    pub checkpoint_interval_ms: u64,
    /// Longest accepted user message, in characters.
    pub max_message_chars: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_model: None,
            lease_ttl_secs: 15,
            checkpoint_interval_ms: 500,
            max_message_chars: 100_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a web login session, in hours.
    pub session_ttl_hours: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Unset: on when
    /// `public_url` is `https://`; see [`AuthConfig::secure_cookies`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secure: Option<bool>,
    /// The URL browsers reach this server at; SSO redirect URLs are
    /// `PUBLIC_URL/api/auth/sso/ID/callback`. Required when an SSO provider is set.
    pub public_url: Option<String>,
    /// Whether local accounts may log in with a password on the web. When off, only
    /// SSO logs in (the admin CLI still works).
    pub local_passwords: bool,
    /// OpenID Connect providers (any standard issuer; Slack with `kind = "slack"`).
    pub oidc: Vec<OidcProviderConfig>,
    /// OAuth2 providers that are not OpenID Connect (Discord, GitHub).
    pub oauth2: Vec<OAuth2ProviderConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_hours: 24 * 14,
            cookie_secure: None,
            public_url: None,
            local_passwords: true,
            oidc: Vec::new(),
            oauth2: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Whether cookies are marked `Secure`: as `cookie_secure` says, else when the
    /// public URL is HTTPS (browsers then never send them over plain HTTP).
    pub fn secure_cookies(&self) -> bool {
        self.cookie_secure
            .unwrap_or_else(|| self.public_url_is_https())
    }

    fn public_url_is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }
}

pub use chorus_model::config::{ConfigError, invalid};

impl Config {
    /// Settings that are valid but that a shared deployment would regret: one line
    /// each, starting with the key, for `chorus config check`.
    /// The defaults give none; the embedded demo works with them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.quota_warnings();
        if self.auth.cookie_secure == Some(false) && self.auth.public_url_is_https() {
            warnings.push(
                "auth.cookie_secure = false while auth.public_url is https: session cookies may \
                 travel over plain HTTP"
                    .to_string(),
            );
        }
        warnings.extend(self.telemetry.warnings());
        if self.sandbox.enabled {
            warnings.push(
                "sandbox.enabled = true: models run the code they write in containers on the \
                 Docker host; keep that host for this alone"
                    .to_string(),
            );
        }
        warnings
    }

    /// Reads `path` (if given) and the environment, and validates the result.
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::load_with_surfaces(path, env, &[])
    }

    /// [`Config::load`], keeping the top-level sections named in `surfaces` aside for
    /// their surfaces ([`Config::surface_sections`]) instead of refusing them as unknown.
    pub fn load_with_surfaces(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
        surfaces: &[&str],
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_with_surfaces(&text, env, surfaces)
    }

    /// Parses TOML text, applies `CHORUS_*` overrides and `${VAR}` references, validates.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_toml_with_surfaces(text, env, &[])
    }

    /// [`Config::from_toml`], keeping the sections named in `surfaces` aside for them.
    pub fn from_toml_with_surfaces(
        text: &str,
        env: &BTreeMap<String, String>,
        surfaces: &[&str],
    ) -> Result<Self, ConfigError> {
        let mut root: toml::Value = if text.trim().is_empty() {
            toml::Value::Table(Default::default())
        } else {
            text.parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| ConfigError::Syntax(e.to_string()))?
        };
        env::apply_env_overrides(&mut root, env)?;
        env::interpolate_env(&mut root, env, &mut String::new())?;
        let mut surface_sections = SurfaceSections::default();
        if let toml::Value::Table(table) = &mut root {
            for name in surfaces {
                if let Some(section) = table.remove(*name) {
                    surface_sections.0.insert(name.to_string(), section);
                }
            }
        }
        let mut config: Config =
            serde_path_to_error::deserialize(root).map_err(|e| ConfigError::Shape {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        config.surface_sections = surface_sections;
        if config.sandbox.docker_host.is_none() {
            // Docker's own variable, as the docker CLI reads it.
            config.sandbox.docker_host = env.get("DOCKER_HOST").cloned();
        }
        config.validate()?;
        chorus_providers::config_check::check_credentials(&config.providers, env)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.listen_addr()?;
        self.telemetry.validate(Some(listen))?;
        crate::mcp::config::validate(&self.mcp, &self.tools)?;
        crate::access::config::validate(&self.access)?;
        if let Some(url) = &self.database.url {
            let u = url.expose();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "database.url",
                    mask_url_password(u),
                    "a URL starting with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        if let Some(url) = &self.journal.redis_url {
            let u = url.expose();
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(invalid(
                    "journal.redis_url",
                    mask_url_password(u),
                    "a URL starting with redis:// or rediss://",
                ));
            }
        }
        if self.engine.lease_ttl_secs < 2 {
            return Err(invalid(
                "engine.lease_ttl_secs",
                self.engine.lease_ttl_secs.to_string(),
                "at least 2 seconds",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(invalid(
                "server.request_timeout_secs",
                "0",
                "at least 1 second",
            ));
        }
        if self.server.max_streams_per_account == 0 {
            return Err(invalid(
                "server.max_streams_per_account",
                "0",
                "at least 1 stream",
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                self.server.max_body_bytes.to_string(),
                "at least 1024 bytes",
            ));
        }
        self.validate_quota()?;
        chorus_providers::config_check::validate_providers(&self.providers)?;
        self.sandbox.validate()?;
        crate::sso::config::validate(
            self.auth.public_url.as_deref(),
            &self.auth.oidc,
            &self.auth.oauth2,
        )
        .map_err(|p| invalid(p.key, p.value, p.expected))?;
        let providers = self.effective_providers();
        chorus_providers::config_check::validate_aliases(&self.aliases, &providers)?;
        if let Some(model) = &self.engine.default_model
            && !self.aliases.iter().any(|a| &a.name == model)
            && !chorus_providers::config_check::names_a_model(&providers, model)
        {
            return Err(invalid(
                "engine.default_model",
                model,
                "PROVIDER/MODEL naming a configured provider and one of its models",
            ));
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                &self.server.listen,
                "HOST:PORT, e.g. 127.0.0.1:3000",
            )
        })
    }

    /// The directory for embedded data (`./data` unless configured).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// The database URL in force: the configured one, or SQLite under the data dir.
    pub fn database_url(&self) -> Secret {
        match &self.database.url {
            Some(url) => url.clone(),
            None => Secret::new(format!("sqlite://{}/chorus.db", self.data_dir().display())),
        }
    }

    /// The providers in force: the configured ones, or the scripted demo provider
    /// when none is configured, so a fresh install can chat at once.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        if !self.providers.is_empty() {
            return self.providers.clone();
        }
        vec![ProviderConfig::scripted_demo()]
    }

    /// The instance name used for run leases.
    pub fn instance_id(&self) -> String {
        if let Some(id) = &self.server.instance_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}@{}", self.server.listen)
    }

    /// A surface's section parsed into its own type, `None` when the file has none.
    /// Errors name the key with the section's prefix (`matrix.user_id`), as every
    /// other config error does; the surface validates the values itself.
    pub fn surface_section<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(section) = self.surface_sections.0.get(name) else {
            return Ok(None);
        };
        serde_path_to_error::deserialize(section.clone())
            .map(Some)
            .map_err(|e| {
                let path = e.path().to_string();
                ConfigError::Shape {
                    key: if path == "." {
                        name.to_string()
                    } else {
                        format!("{name}.{path}")
                    },
                    message: e.inner().to_string(),
                }
            })
    }

    /// The effective configuration as TOML with every secret masked.
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.data_dir = Some(self.data_dir());
        let url = mask_url_password(self.database_url().expose());
        shown.database.url = Some(Secret::new(url));
        shown.telemetry.otlp_endpoint = self
            .telemetry
            .otlp_endpoint
            .as_deref()
            .map(mask_url_password);
        let mut text = toml::to_string_pretty(&shown).unwrap_or_default();
        // `Secret` already serializes masked; URLs keep their non-secret parts visible.
        // Keys are matched from the line start: `url = ` is also the end of `redis_url = `.
        text = text.replace(
            "\nurl = \"********\"",
            &format!(
                "\nurl = {:?}",
                mask_url_password(self.database_url().expose())
            ),
        );
        if let Some(redis) = &self.journal.redis_url {
            text = text.replace(
                "\nredis_url = \"********\"",
                &format!("\nredis_url = {:?}", mask_url_password(redis.expose())),
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn surface_sections_are_kept_aside_and_never_shown_by_debug() {
        let text = "[matrix]\npassword = \"hunter2\"\n";
        let config = Config::from_toml_with_surfaces(text, &BTreeMap::new(), &["matrix"]).unwrap();
        let debug = format!("{config:?}");
        assert!(
            debug.contains("\"matrix\"") && !debug.contains("hunter2"),
            "{debug}"
        );
        let err = Config::from_toml(text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("matrix"), "{err}");
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_config_gives_usable_defaults() {
        let c = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(c.listen_addr().unwrap().to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url().expose(), "sqlite://data/chorus.db");
        assert!(c.journal.redis_url.is_none());
        let providers = c.effective_providers();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].kind, ProviderKind::Scripted);
    }

    #[test]
    fn env_overrides_and_interpolation_apply() {
        let text = r#"
[[providers]]
id = "openai"
kind = "openai"
api_key = "${OPENAI_API_KEY}"
models = ["gpt-4o-mini"]
"#;
        let c = Config::from_toml(
            text,
            &env(&[
                ("OPENAI_API_KEY", "sk-test"),
                ("CHORUS_SERVER__LISTEN", "0.0.0.0:8080"),
                ("CHORUS_ENGINE__LEASE_TTL_SECS", "30"),
                ("CHORUS_PROVIDERS__0__BASE_URL", "http://127.0.0.1:9/v1"),
                ("CHORUS_UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8080");
        assert_eq!(c.engine.lease_ttl_secs, 30);
        assert_eq!(c.providers[0].api_key.as_ref().unwrap().expose(), "sk-test");
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
    }

    #[test]
    fn wrong_values_name_key_value_and_expectation() {
        let err = Config::from_toml("[server]\nlisten = \"nowhere\"", &env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("server.listen") && msg.contains("nowhere") && msg.contains("HOST:PORT"),
            "{msg}"
        );

        let err = Config::from_toml("[engine]\nlease_ttl_secs = \"soon\"", &env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("engine.lease_ttl_secs") && msg.contains("soon"),
            "{msg}"
        );

        let err = Config::from_toml("[server]\nlisten_on = \"x\"", &env(&[])).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");

        let err = Config::from_toml("[database]\nurl = \"mysql://x\"", &env(&[])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");

        let err = Config::from_toml(
            "[[providers]]\nid='a'\nkind='openai'\napi_key='${NOPE}'\nmodels=['m']",
            &env(&[]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("NOPE") && err.to_string().contains("providers[0].api_key"),
            "{err}"
        );
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let c = Config::from_toml(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
            &env(&[]),
        )
        .unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let client = |peer: &str, xff: &[&str]| c.server.client_ip(ip(peer), xff.iter().copied());
        // Not from a proxy: the header is the client's to forge.
        assert_eq!(client("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // From a proxy: the right-most address that is not a proxy.
        assert_eq!(client("10.1.2.3", &["198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(
            client("10.1.2.3", &["1.1.1.1, 198.51.100.1, 10.9.9.9"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            client("::1", &["1.1.1.1", "198.51.100.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            client("::ffff:10.0.0.1", &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // A proxy that forwards nothing (or garbage) is the client itself.
        assert_eq!(client("10.1.2.3", &[]), ip("10.1.2.3"));
        assert_eq!(client("10.1.2.3", &["nonsense"]), ip("10.1.2.3"));
        // No proxies configured: the peer, always.
        let none = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(
            none.server
                .client_ip(ip("127.0.0.1"), ["198.51.100.1"].into_iter()),
            ip("127.0.0.1")
        );
        let err = Config::from_toml("[server]\ntrusted_proxies = [\"proxy\"]", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("CIDR"),
            "{err}"
        );
    }

    #[test]
    fn masked_dump_hides_secrets() {
        let text = r#"
[database]
url = "postgres://chorus:hunter2@db/chorus"
[journal]
redis_url = "redis://:redispw@cache:6379"
[[providers]]
id = "openai"
kind = "openai"
api_key = "sk-very-secret"
models = ["gpt-4o-mini"]
headers = { "X-Org" = "org-secret" }
[telemetry]
otlp_endpoint = "https://user:otlp-pw@collector.example:4318"
otlp_headers = { Authorization = "Basic otlp-secret" }
metrics_token = "scrape-secret"
"#;
        let c = Config::from_toml(text, &env(&[])).unwrap();
        let dump = c.masked_toml();
        for secret in [
            "hunter2",
            "redispw",
            "sk-very-secret",
            "org-secret",
            "otlp-pw",
            "otlp-secret",
            "scrape-secret",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked in:\n{dump}");
        }
        assert!(
            dump.contains("postgres://chorus:********@db/chorus"),
            "{dump}"
        );
        assert!(
            dump.contains("redis_url = \"redis://:********@cache:6379\""),
            "{dump}"
        );
    }
}

#[cfg(test)]
mod warning_tests {
    use super::*;

    /// The defaults are safe for a shared deployment: no warning. Each risky setting
    /// gets one warning line that starts with its key.
    #[test]
    fn each_risky_setting_is_named_once() {
        let env = BTreeMap::new();
        assert_eq!(Config::default().warnings(), Vec::<String>::new());
        let defaults = Config::from_toml("", &env).unwrap();
        assert!(defaults.quota.enabled && defaults.limits.messages_per_window > 0);
        assert!(defaults.limits.max_concurrent_runs > 0 && !defaults.sandbox.enabled);
        assert_eq!(defaults.limits.on_store_error, OnStoreError::Deny);
        for (toml, key) in [
            ("[quota]\nenabled = false", "quota.enabled"),
            (
                "[limits]\nmessages_per_window = 0",
                "limits.messages_per_window",
            ),
            (
                "[limits]\nmax_concurrent_runs = 0",
                "limits.max_concurrent_runs",
            ),
            (
                "[limits]\non_store_error = \"allow\"",
                "limits.on_store_error",
            ),
            (
                "[accounts]\ndefault_role = \"admin\"",
                "accounts.default_role",
            ),
            (
                "[auth]\npublic_url = \"https://chat.example.com\"\ncookie_secure = false",
                "auth.cookie_secure",
            ),
            ("[sandbox]\nenabled = true", "sandbox.enabled"),
            (
                "[telemetry]\nmetrics_path = \"/metrics\"",
                "telemetry.metrics_path",
            ),
            (
                "[telemetry]\ninclude_content = true",
                "telemetry.include_content",
            ),
        ] {
            let warnings = Config::from_toml(toml, &env).unwrap().warnings();
            assert_eq!(warnings.len(), 1, "{toml}: {warnings:?}");
            assert!(warnings[0].starts_with(key), "{toml}: {warnings:?}");
        }
    }

    #[test]
    fn cookies_are_secure_behind_an_https_public_url() {
        let env = BTreeMap::new();
        let auth = |toml: &str| Config::from_toml(toml, &env).unwrap().auth;
        assert!(!auth("").secure_cookies());
        assert!(auth("[auth]\npublic_url = \"https://chat.example.com\"").secure_cookies());
        assert!(!auth("[auth]\npublic_url = \"http://127.0.0.1:3000\"").secure_cookies());
        assert!(
            !auth("[auth]\npublic_url = \"https://c.example.com\"\ncookie_secure = false")
                .secure_cookies()
        );
        assert!(auth("[auth]\ncookie_secure = true").secure_cookies());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The committed example config parses, and documents every key the config has.
    #[test]
    fn example_config_is_valid_and_complete() {
        let example = include_str!("../../chorus.example.toml");
        let env: BTreeMap<String, String> =
            [("OPENAI_API_KEY".to_string(), "sk-x".to_string())].into();
        let config = Config::from_toml(example, &env).expect("chorus.example.toml must be valid");
        assert_eq!(config.providers.len(), 2);
        assert_eq!(
            config.warnings(),
            Vec::<String>::new(),
            "the example's settings are safe"
        );
        let defaults = toml::to_string(&Config::default()).unwrap();
        let provider_keys = toml::to_string(&config.providers[0]).unwrap();
        for line in defaults.lines().chain(provider_keys.lines()) {
            if let Some((key, _)) = line
                .split_once(" = ")
                .filter(|(k, _)| !["providers", "aliases", "oidc", "oauth2"].contains(k))
            {
                assert!(
                    example.contains(&format!("{key} = ")),
                    "chorus.example.toml does not document `{key}`"
                );
            }
        }
        for optional in [
            "instance_id",
            "url",
            "max_connections",
            "redis_url",
            "default_model",
            "headers",
            "text",
            "api_version",
            "public_url",
            "cookie_secure",
            "issuer",
            "admin_claim",
            "allowed_email_domains",
        ] {
            assert!(
                example.contains(&format!("{optional} = ")),
                "chorus.example.toml does not document `{optional}`"
            );
        }
    }
}
