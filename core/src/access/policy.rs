//! The effective access policy, pure: the config's defaults with the stored
//! overrides laid over them, the groups of accounts and what they give, and the one
//! matching rule for names. What an account may use is its role's lists united with
//! its groups' ([`AccessPolicy::grant`]).

use super::config::{AccessConfig, ROLES};
use chorus_store::{AccessGroup, AccessResource, AccessRule};
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

/// Every role's effective lists, and every group by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AccessPolicy {
    pub roles: BTreeMap<String, RolePolicy>,
    pub groups: BTreeMap<String, AccessGroup>,
}

/// What one account may use: its role's lists united with its groups'.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Grant {
    pub models: Allow,
    pub tool_servers: Allow,
}

impl Grant {
    pub fn allows_model(&self, model: &str) -> bool {
        allowed(&self.models, model)
    }

    pub fn allows_tool_server(&self, server: &str) -> bool {
        allowed(&self.tool_servers, server)
    }
}

/// A role's list united with lists of groups: every one when the role allows every
/// one (a group can only add), else the role's names followed by the groups'.
fn union<'a>(role: &Allow, groups: impl Iterator<Item = &'a [String]>) -> Allow {
    let list = role.as_ref()?;
    let mut names = list.clone();
    for name in groups.flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Some(names)
}

impl AccessPolicy {
    /// The config's defaults with `rules` (the stored overrides) laid over them, and
    /// the stored `groups`.
    pub fn new(defaults: &AccessConfig, rules: &[AccessRule], groups: &[AccessGroup]) -> Self {
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
        let groups = groups.iter().map(|g| (g.id.clone(), g.clone())).collect();
        Self { roles, groups }
    }

    /// Whether an account of `role` may use more than its role's lists if it is in
    /// some group: there are groups, and the role does not already allow everything
    /// (so its memberships need not be read otherwise).
    pub fn groups_matter(&self, role: &str) -> bool {
        !self.groups.is_empty()
            && self
                .roles
                .get(role)
                .is_some_and(|p| p.models.is_some() || p.tool_servers.is_some())
    }

    /// What an account of `role` in the groups `groups` (ids; unknown ones, such as a
    /// group deleted since, give nothing) may use.
    pub fn grant(&self, role: &str, groups: &[String]) -> Grant {
        let Some(p) = self.roles.get(role) else {
            return Grant::default();
        };
        let mine = || groups.iter().filter_map(|id| self.groups.get(id));
        Grant {
            models: union(&p.models, mine().map(|g| g.models.as_slice())),
            tool_servers: union(&p.tool_servers, mine().map(|g| g.tool_servers.as_slice())),
        }
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
        let none = AccessPolicy::new(&defaults, &[], &[]);
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
        let p = AccessPolicy::new(&defaults, &rules, &[]);
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

    fn group(id: &str, models: &[&str], tools: &[&str]) -> AccessGroup {
        AccessGroup {
            id: id.into(),
            name: format!("group {id}"),
            models: models.iter().map(|s| s.to_string()).collect(),
            tool_servers: tools.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn an_account_gets_its_roles_lists_united_with_its_groups() {
        let mut defaults = AccessConfig::default();
        defaults.roles.insert(
            "user".into(),
            RoleAccess {
                models: Some(vec!["scripted/demo".into()]),
                tool_servers: Some(vec![]),
            },
        );
        let groups = [
            group("g1", &["scripted/big"], &[]),
            group("g2", &["openai/*"], &["everything"]),
            group("empty", &[], &[]),
        ];
        let p = AccessPolicy::new(&defaults, &[], &groups);
        assert!(p.groups_matter("user"));
        assert!(!p.groups_matter("admin"), "admin: every one already");

        let alone = p.grant("user", &[]);
        assert!(alone.allows_model("scripted/demo"));
        assert!(!alone.allows_model("scripted/big"));
        assert!(!alone.allows_tool_server("everything"), "empty list: none");

        let one = p.grant("user", &["g1".into()]);
        assert!(one.allows_model("scripted/demo") && one.allows_model("scripted/big"));
        assert!(!one.allows_model("openai/gpt-4o"));
        assert!(!one.allows_tool_server("everything"));

        let both = p.grant("user", &["g1".into(), "g2".into(), "gone".into()]);
        assert!(both.allows_model("openai/gpt-4o") && both.allows_model("scripted/big"));
        assert!(both.allows_tool_server("everything"));
        assert!(!both.allows_tool_server("sandbox"));
        assert_eq!(
            both.models,
            Some(vec![
                "scripted/demo".to_string(),
                "scripted/big".into(),
                "openai/*".into()
            ])
        );

        // An empty group adds nothing; a role allowing every one stays so.
        assert_eq!(p.grant("user", &["empty".into()]), alone);
        let admin = p.grant("admin", &["g1".into()]);
        assert_eq!(admin.models, None);
        assert!(admin.allows_tool_server("sandbox"));
        assert!(!AccessPolicy::new(&defaults, &[], &[]).groups_matter("user"));
    }
}
