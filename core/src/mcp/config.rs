//! Configuration of MCP servers (`[[mcp.servers]]`) and of tool calls (`[tools]`).

use crate::tools::{ToolAccess, ToolSettings, naming};
use chorus_model::config::ConfigError;
use chorus_model::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// The MCP servers Chorus starts and connects to at server start.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub servers: Vec<McpServerConfig>,
}

/// One MCP server: a child process spoken to over stdio (`command`), or a
/// streamable HTTP endpoint (`url`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The server's name; its tools are offered as `ID__TOOL`. A letter first, then
    /// letters, digits, `-` or `_` (no `__`), at most 32 characters.
    pub id: String,
    /// Stdio: the program to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Stdio: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Stdio: environment variables (values are treated as secrets). The server
    /// starts with a clean environment: these, [`BASE_ENV`] and `inherit_env`.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Stdio: names of Chorus's own environment variables passed through to the
    /// server (e.g. a proxy or CA bundle setting); nothing else of it is.
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Stdio: working directory (default: Chorus's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: headers sent with every request (values are secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Roles (`user`, `admin`) whose accounts may use the server's tools.
    #[serde(default)]
    pub allow_roles: Vec<String>,
    /// Account ids (as `GET /api/me` shows them) that may use the server's tools.
    /// Not names: single sign-on and chat surfaces give names out first come, first
    /// served. With `allow_roles` and `allow_identities` also empty, every account may.
    #[serde(default)]
    pub allow_accounts: Vec<String>,
    /// Platform identities whose accounts may use the server's tools, e.g.
    /// `{ platform = "discord", id = "80351110224678912" }` or
    /// `{ platform = "oidc:corp", id = "SUB" }`: whoever the identity is linked to.
    #[serde(default)]
    pub allow_identities: Vec<IdentityRule>,
}

/// The variables of Chorus's environment every stdio server gets (when set): what
/// node, python and a shell need to start, and nothing secret.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// One platform identity of `allow_identities`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// `discord`, `slack`, `github`, `matrix`, or `oidc:PROVIDER_ID`.
    pub platform: String,
    /// The platform's user id (Discord and Slack user ids, the Matrix user id, the
    /// GitHub numeric id, the OIDC `sub`).
    pub id: String,
}

impl McpServerConfig {
    pub fn access(&self) -> ToolAccess {
        ToolAccess {
            roles: self.allow_roles.clone(),
            accounts: self.allow_accounts.clone(),
            identities: self
                .allow_identities
                .iter()
                .map(|i| (i.platform.clone(), i.id.clone()))
                .collect(),
        }
    }
}

/// Limits of the engine's tool loop.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Rounds of tool calls one reply may make; a model that asks for more ends the
    /// reply with finish reason `max_tool_steps` (it can be continued).
    pub max_steps: u32,
    /// Seconds one tool call may take before it is cancelled and reported to the
    /// model as an error.
    pub call_timeout_secs: u64,
    /// Largest tool output given to the model, in bytes; longer ones are cut with a note.
    pub max_output_bytes: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        let d = ToolSettings::default();
        Self {
            max_steps: d.max_steps,
            call_timeout_secs: d.call_timeout.as_secs(),
            max_output_bytes: d.max_output_bytes,
        }
    }
}

impl ToolsConfig {
    pub fn settings(&self) -> ToolSettings {
        ToolSettings {
            call_timeout: Duration::from_secs(self.call_timeout_secs),
            max_output_bytes: self.max_output_bytes,
            max_steps: self.max_steps,
        }
    }
}

fn invalid(key: String, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Checks `[[mcp.servers]]` and `[tools]`, naming the key at fault.
pub fn validate(mcp: &McpConfig, tools: &ToolsConfig) -> Result<(), ConfigError> {
    if tools.max_steps == 0 {
        return Err(invalid("tools.max_steps".into(), "0", "at least 1"));
    }
    if tools.call_timeout_secs == 0 {
        return Err(invalid(
            "tools.call_timeout_secs".into(),
            "0",
            "at least 1 second",
        ));
    }
    if tools.max_output_bytes < 256 {
        return Err(invalid(
            "tools.max_output_bytes".into(),
            &tools.max_output_bytes.to_string(),
            "at least 256 bytes",
        ));
    }
    let mut seen = HashSet::new();
    for (i, s) in mcp.servers.iter().enumerate() {
        let key = |f: &str| format!("mcp.servers[{i}].{f}");
        if !naming::valid_source_id(&s.id) {
            return Err(invalid(
                key("id"),
                &s.id,
                "a letter, then letters, digits, `-` or `_` (no `__`), at most 32 characters",
            ));
        }
        if s.id == crate::sandbox::SOURCE_ID {
            return Err(invalid(
                key("id"),
                &s.id,
                "another id (`sandbox` is the code sandbox's)",
            ));
        }
        if !seen.insert(s.id.clone()) {
            return Err(invalid(key("id"), &s.id, "a name no other MCP server uses"));
        }
        match (&s.command, &s.url) {
            (Some(c), None) if !c.trim().is_empty() => {}
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {}
            (None, Some(u)) => return Err(invalid(key("url"), u, "an http:// or https:// URL")),
            _ => {
                return Err(invalid(
                    key("command"),
                    s.command.as_deref().unwrap_or_default(),
                    "either `command` (stdio) or `url` (streamable HTTP), not both",
                ));
            }
        }
        for role in &s.allow_roles {
            if role != "user" && role != "admin" {
                return Err(invalid(key("allow_roles"), role, "`user` or `admin`"));
            }
        }
        for name in &s.inherit_env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(invalid(
                    key("inherit_env"),
                    name,
                    "names of environment variables",
                ));
            }
        }
        for account in &s.allow_accounts {
            if chorus_model::ids::AccountId::parse(account).is_none() {
                return Err(invalid(
                    key("allow_accounts"),
                    account,
                    "an account id as GET /api/me shows it (names are first come, first \
                     served, so they grant nothing; use the id, or allow_identities)",
                ));
            }
        }
        for (j, identity) in s.allow_identities.iter().enumerate() {
            let platform = identity.platform.as_str();
            let known = matches!(platform, "discord" | "slack" | "github" | "matrix")
                || platform
                    .strip_prefix("oidc:")
                    .is_some_and(|p| !p.is_empty());
            if !known {
                return Err(invalid(
                    key(&format!("allow_identities[{j}].platform")),
                    platform,
                    "discord, slack, github, matrix or oidc:PROVIDER_ID (web logins are \
                     names: use allow_accounts with the account id)",
                ));
            }
            if identity.id.trim().is_empty() {
                return Err(invalid(
                    key(&format!("allow_identities[{j}].id")),
                    &identity.id,
                    "the platform's user id",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str) -> McpServerConfig {
        McpServerConfig {
            id: id.into(),
            command: Some("node".into()),
            args: vec![],
            env: BTreeMap::new(),
            inherit_env: vec![],
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            allow_roles: vec![],
            allow_accounts: vec![],
            allow_identities: vec![],
        }
    }

    #[test]
    fn access_lists_name_ids_and_identities_not_names() {
        let tools = ToolsConfig::default();
        let mut by_name = server("a");
        by_name.allow_accounts = vec!["alice".into()];
        let err = validate(
            &McpConfig {
                servers: vec![by_name],
            },
            &tools,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mcp.servers[0].allow_accounts") && err.contains("account id"),
            "{err}"
        );
        let mut by_id = server("a");
        by_id.allow_accounts = vec![chorus_model::ids::AccountId::generate().to_string()];
        by_id.allow_identities = vec![
            IdentityRule {
                platform: "discord".into(),
                id: "80351110224678912".into(),
            },
            IdentityRule {
                platform: "oidc:corp".into(),
                id: "sub-1".into(),
            },
        ];
        validate(
            &McpConfig {
                servers: vec![by_id.clone()],
            },
            &tools,
        )
        .unwrap();
        let mut web = by_id;
        web.allow_identities[0].platform = "web".into();
        let err = validate(&McpConfig { servers: vec![web] }, &tools)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_identities[0].platform"), "{err}");
    }

    #[test]
    fn bad_servers_are_named() {
        let tools = ToolsConfig::default();
        let ok = McpConfig {
            servers: vec![server("everything")],
        };
        validate(&ok, &tools).unwrap();
        let dup = McpConfig {
            servers: vec![server("a"), server("a")],
        };
        assert!(
            validate(&dup, &tools)
                .unwrap_err()
                .to_string()
                .contains("mcp.servers[1].id")
        );
        let mut both = server("b");
        both.url = Some("http://127.0.0.1:1/mcp".into());
        let err = validate(
            &McpConfig {
                servers: vec![both],
            },
            &tools,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let mut role = server("c");
        role.allow_roles = vec!["root".into()];
        let err = validate(
            &McpConfig {
                servers: vec![role],
            },
            &tools,
        )
        .unwrap_err();
        assert!(err.to_string().contains("allow_roles"), "{err}");
        let err = validate(
            &McpConfig {
                servers: vec![server("a__b")],
            },
            &tools,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mcp.servers[0].id"), "{err}");
    }
}
