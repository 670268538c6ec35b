//! The `[access]` section: per role, the models and tool servers it may use by
//! default (the admin console's Access page overrides it in the database).

use chorus_model::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The roles an access rule may name.
pub const ROLES: [&str; 2] = ["user", "admin"];

/// `[access.roles.ROLE]` tables; a role without one may use every model and server.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    pub roles: BTreeMap<String, RoleAccess>,
}

/// What one role may use; an absent list allows every one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoleAccess {
    /// Model ids (`provider/model`), alias names, `provider/*` or `*`.
    pub models: Option<Vec<String>>,
    /// MCP server names and `sandbox` (the `code_interpreter` tool), or `*`.
    pub tool_servers: Option<Vec<String>>,
}

/// The longest name an access list may hold.
pub const MAX_NAME: usize = 200;
/// The most names one list may hold.
pub const MAX_NAMES: usize = 200;

/// Checks role names and the shape of every list (names themselves are checked
/// against the models and servers by the Access page, and `chorus config check`
/// warns about none: a name matching nothing allows nothing).
pub fn validate(config: &AccessConfig) -> Result<(), ConfigError> {
    for (role, access) in &config.roles {
        if !ROLES.contains(&role.as_str()) {
            return Err(ConfigError::Invalid {
                key: format!("access.roles.{role}"),
                value: role.clone(),
                expected: "a role: `user` or `admin`".into(),
            });
        }
        for (what, list) in [
            ("models", &access.models),
            ("tool_servers", &access.tool_servers),
        ] {
            let Some(list) = list else { continue };
            if list.len() > MAX_NAMES {
                return Err(ConfigError::Invalid {
                    key: format!("access.roles.{role}.{what}"),
                    value: format!("{} entries", list.len()),
                    expected: format!("at most {MAX_NAMES} entries"),
                });
            }
            if let Some(bad) = list
                .iter()
                .find(|n| n.trim().is_empty() || n.len() > MAX_NAME || n.trim() != n.as_str())
            {
                return Err(ConfigError::Invalid {
                    key: format!("access.roles.{role}.{what}"),
                    value: bad.clone(),
                    expected: format!(
                        "a name of 1 to {MAX_NAME} characters without surrounding spaces"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_and_blank_names_are_refused() {
        let parse = |t: &str| toml::from_str::<AccessConfig>(t).unwrap();
        assert!(validate(&parse("[roles.user]\nmodels = [\"a/b\", \"fast\"]")).is_ok());
        let err = validate(&parse("[roles.root]\nmodels = []")).unwrap_err();
        assert!(err.to_string().contains("access.roles.root"), "{err}");
        let err = validate(&parse("[roles.user]\ntool_servers = [\" \"]")).unwrap_err();
        assert!(
            err.to_string().contains("access.roles.user.tool_servers"),
            "{err}"
        );
    }
}
