//! The effective access policy, pure: the config's defaults with the stored
//! overrides laid over them, and the one matching rule for names.

use super::config::{AccessConfig, ROLES};
use chorus_store::{AccessResource, AccessRule};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a list allows: every one (`None`) or the names it matches.
pub type Allow = Option<Vec<String>>;

/// Whether access-list entry `entry` covers `name`: the same name, `*` (everything),
/// or `provider/*` (every model of a provider). An alias is its own name: allowing an
/// alias allows requests naming it, whatever models its chain tries.
pub fn name_matches(entry: &str, name: &str) -> bool {
    entry == name
        || entry == "*"
        || entry
            .strip_suffix("/*")
            .is_some_and(|p| name.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn allowed(allow: &Allow, name: &str) -> bool {
    allow
        .as_ref()
        .is_none_or(|list| list.iter().any(|e| name_matches(e, name)))
}

/// One role's lists, with where each comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RolePolicy {
    pub models: Allow,
    pub tool_servers: Allow,
    /// Whether `models` comes from the database (else from the config).
    pub models_overridden: bool,
    pub tool_servers_overridden: bool,
}

/// Every role's effective lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AccessPolicy {
    pub roles: BTreeMap<String, RolePolicy>,
}

impl AccessPolicy {
    /// The config's defaults with `rules` (the stored overrides) laid over them.
    pub fn new(defaults: &AccessConfig, rules: &[AccessRule]) -> Self {
        let mut roles = BTreeMap::new();
        for role in ROLES {
            let d = defaults.roles.get(role).cloned().unwrap_or_default();
            let mut p = RolePolicy {
                models: d.models,
                tool_servers: d.tool_servers,
                ..RolePolicy::default()
            };
            for rule in rules.iter().filter(|r| r.role == role) {
                match rule.resource {
                    AccessResource::Models => {
                        p.models = rule.allow.clone();
                        p.models_overridden = true;
                    }
                    AccessResource::ToolServers => {
                        p.tool_servers = rule.allow.clone();
                        p.tool_servers_overridden = true;
                    }
                }
            }
            roles.insert(role.to_string(), p);
        }
        Self { roles }
    }

    /// Whether `role` may use the model (or alias) `model`.
    pub fn allows_model(&self, role: &str, model: &str) -> bool {
        self.roles
            .get(role)
            .is_none_or(|p| allowed(&p.models, model))
    }

    /// Whether `role` may use the tool server `server` (an MCP server or `sandbox`).
    pub fn allows_tool_server(&self, role: &str, server: &str) -> bool {
        self.roles
            .get(role)
            .is_none_or(|p| allowed(&p.tool_servers, server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::RoleAccess;

    #[test]
    fn names_match_exactly_by_provider_or_all() {
        assert!(name_matches("openai/gpt-4o", "openai/gpt-4o"));
        assert!(!name_matches("openai/gpt-4o", "openai/gpt-4o-mini"));
        assert!(name_matches("openai/*", "openai/gpt-4o"));
        assert!(!name_matches("openai/*", "openaix/gpt-4o"));
        assert!(!name_matches("openai/*", "fast"));
        assert!(name_matches("*", "fast"));
        assert!(name_matches("fast", "fast"));
    }

    #[test]
    fn overrides_replace_the_config_per_role_and_resource() {
        let mut defaults = AccessConfig::default();
        defaults.roles.insert(
            "user".into(),
            RoleAccess {
                models: Some(vec!["scripted/*".into()]),
                tool_servers: Some(vec!["files".into()]),
            },
        );
        let none = AccessPolicy::new(&defaults, &[]);
        assert!(none.allows_model("user", "scripted/demo"));
        assert!(!none.allows_model("user", "openai/gpt-4o"));
        assert!(
            none.allows_model("admin", "openai/gpt-4o"),
            "no list: everything"
        );
        assert!(!none.allows_tool_server("user", "sandbox"));
        assert!(none.allows_tool_server("user", "files"));

        let rules = [
            AccessRule {
                role: "user".into(),
                resource: AccessResource::Models,
                allow: None,
                updated_at: 0,
            },
            AccessRule {
                role: "admin".into(),
                resource: AccessResource::ToolServers,
                allow: Some(vec![]),
                updated_at: 0,
            },
        ];
        let p = AccessPolicy::new(&defaults, &rules);
        assert!(
            p.allows_model("user", "openai/gpt-4o"),
            "override: every model"
        );
        assert!(p.roles["user"].models_overridden);
        assert!(
            !p.allows_tool_server("user", "sandbox"),
            "tools still from config"
        );
        assert!(!p.roles["user"].tool_servers_overridden);
        assert!(!p.allows_tool_server("admin", "files"), "empty list: none");
    }
}
