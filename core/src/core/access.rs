//! The access policy on the facade: the one place that decides which models and
//! tool servers an account may use (its role's lists united with its groups'), for
//! every model list, admission and tool offer on every surface, and the admin's view
//! and changes of it (role overrides, groups and their members).

use super::{Core, CoreError, Forbidden, InvalidInput};
use crate::access::{AccessPolicy, Allow, Grant, RoleAccess, config::MAX_NAME, config::MAX_NAMES};
use chorus_model::ids::AccountId;
use chorus_model::{Account, Role};
use chorus_providers::ModelInfo;
use chorus_store::{AccessGroup, AccessResource, GroupMember};
use serde::Serialize;

use super::Admin;

/// What an admin sets for one role's list.
#[derive(Clone, Debug, PartialEq)]
pub enum AccessSetting {
    /// Back to the config file's default (the override is removed).
    Config,
    /// Every model or server.
    All,
    /// Only these names.
    Only(Vec<String>),
}

/// One role's lists as the Access page shows them: the config's, the override (if
/// any) and the effective one (`None`: every one).
#[derive(Clone, Debug, Serialize)]
pub struct RoleAccessView {
    pub role: &'static str,
    pub models: Allow,
    pub models_source: &'static str,
    pub config_models: Allow,
    pub tool_servers: Allow,
    pub tool_servers_source: &'static str,
    pub config_tool_servers: Allow,
}

/// A group as the Access page lists it: what it gives and how many are in it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    #[serde(flatten)]
    pub group: AccessGroup,
    pub members: i64,
}

/// A group's page: the group and a page of its members (by name).
#[derive(Clone, Debug, Serialize)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub group: GroupView,
    pub member_list: Vec<GroupMember>,
}

/// The longest group name.
pub const MAX_GROUP_NAME: usize = 64;

/// The Access page: every role, every group, and what may be named.
#[derive(Clone, Debug, Serialize)]
pub struct AccessView {
    pub roles: Vec<RoleAccessView>,
    pub groups: Vec<GroupView>,
    /// Model ids and alias names.
    pub models: Vec<String>,
    /// MCP server ids and `sandbox`.
    pub tool_servers: Vec<String>,
    /// Seconds within which another instance applies a change.
    pub refresh_secs: u64,
}

fn group_view(group: AccessGroup, sizes: &[(String, i64)]) -> GroupView {
    let members = sizes
        .iter()
        .find(|(id, _)| *id == group.id)
        .map_or(0, |(_, n)| *n);
    GroupView { group, members }
}

fn source(overridden: bool) -> &'static str {
    if overridden { "override" } else { "config" }
}

impl Core {
    async fn access_policy_now(&self) -> Result<std::sync::Arc<AccessPolicy>, CoreError> {
        Ok(self.access.policy(&self.store).await?)
    }

    /// What `account` may use: its role's lists united with its groups' (its
    /// memberships are read only when some group could add to its role's lists).
    async fn grant_of(&self, account: &Account) -> Result<Grant, CoreError> {
        let policy = self.access_policy_now().await?;
        let role = account.role.as_str();
        let groups = if policy.groups_matter(role) {
            self.store.account_access_groups(&account.id).await?
        } else {
            Vec::new()
        };
        Ok(policy.grant(role, &groups))
    }

    /// The models (and aliases) `account` may use, in the configured order.
    pub async fn models_for(&self, account: &Account) -> Result<Vec<ModelInfo>, CoreError> {
        let grant = self.grant_of(account).await?;
        Ok(self
            .models()
            .iter()
            .filter(|m| grant.allows_model(&m.id))
            .cloned()
            .collect())
    }

    /// The models a role may use (for a caller not signed in: the role new accounts
    /// get, `accounts.default_role`).
    pub async fn models_for_role(&self, role: Role) -> Result<Vec<ModelInfo>, CoreError> {
        let policy = self.access_policy_now().await?;
        Ok(self
            .models()
            .iter()
            .filter(|m| policy.allows_model(role.as_str(), &m.id))
            .cloned()
            .collect())
    }

    /// The models a chat identity may use (its account's role; an identity without
    /// an account yet gets the default role's), for model pickers that run before a
    /// command (Discord's autocomplete).
    pub async fn models_for_identity(
        &self,
        identity: &chorus_store::Identity,
    ) -> Result<Vec<ModelInfo>, CoreError> {
        match self.account_for_identity(identity).await? {
            Some(account) => self.models_for(&account).await,
            None => self.models_for_role(self.default_role()).await,
        }
    }

    /// The model a new conversation of `account` gets: the configured default when
    /// its role may use it, else the first model it may use (else the default, which
    /// admission then refuses with a message naming it).
    pub async fn default_model_for(&self, account: &Account) -> Result<String, CoreError> {
        let grant = self.grant_of(account).await?;
        let default = self.default_model();
        if grant.allows_model(default) {
            return Ok(default.to_string());
        }
        Ok(self
            .models()
            .iter()
            .find(|m| grant.allows_model(&m.id))
            .map_or(default, |m| m.id.as_str())
            .to_string())
    }

    /// Refuses a model that does not exist, or that `account` may not use (by its
    /// role and groups; with a message naming the model).
    pub(crate) async fn check_model_for(
        &self,
        account: &Account,
        model: &str,
    ) -> Result<(), CoreError> {
        self.check_model(model)?;
        if self.grant_of(account).await?.allows_model(model) {
            Ok(())
        } else {
            Err(Forbidden::ModelNotAllowed {
                model: model.to_string(),
                role: account.role.as_str(),
            }
            .into())
        }
    }

    /// The tool servers `account` may use, by its role and groups (`None`: every one).
    pub(super) async fn account_tool_servers(&self, account: &Account) -> Result<Allow, CoreError> {
        Ok(self.grant_of(account).await?.tool_servers)
    }

    /// The Access page: each role's lists and where they come from, and the groups.
    pub async fn access_view(&self, _: &Admin) -> Result<AccessView, CoreError> {
        self.access.invalidate();
        let policy = self.access_policy_now().await?;
        let defaults = self.access.defaults();
        let roles = [Role::User, Role::Admin]
            .into_iter()
            .map(|role| {
                let p = policy.roles.get(role.as_str()).cloned().unwrap_or_default();
                let d: RoleAccess = defaults
                    .roles
                    .get(role.as_str())
                    .cloned()
                    .unwrap_or_default();
                RoleAccessView {
                    role: role.as_str(),
                    models: p.models,
                    models_source: source(p.models_overridden),
                    config_models: d.models,
                    tool_servers: p.tool_servers,
                    tool_servers_source: source(p.tool_servers_overridden),
                    config_tool_servers: d.tool_servers,
                }
            })
            .collect();
        let sizes = self.store.access_group_sizes().await?;
        let mut groups: Vec<GroupView> = policy
            .groups
            .values()
            .map(|g| group_view(g.clone(), &sizes))
            .collect();
        groups.sort_by(|a, b| a.group.name.cmp(&b.group.name));
        Ok(AccessView {
            roles,
            groups,
            models: self.models().iter().map(|m| m.id.clone()).collect(),
            tool_servers: self.tool_server_ids(),
            refresh_secs: crate::access::ACCESS_TTL.as_secs(),
        })
    }

    fn tool_server_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.mcp.iter().map(|s| s.id_str().to_string()).collect();
        if self.config.sandbox.enabled {
            ids.push("sandbox".into());
        }
        ids
    }

    /// Sets what `role` may use of `resource` (audited with the change); applied on
    /// this instance at once and on the others within the policy's refresh time.
    /// Names must be models or aliases (or `PROVIDER/*`, `*`) or tool servers.
    pub async fn set_access(
        &self,
        admin: &Admin,
        role: Role,
        resource: AccessResource,
        setting: AccessSetting,
    ) -> Result<bool, CoreError> {
        let rule = match setting {
            AccessSetting::Config => None,
            AccessSetting::All => Some(None),
            AccessSetting::Only(names) => Some(Some(self.checked_names(resource, names)?)),
        };
        let changed = self
            .store
            .set_access_rule(&admin.actor(), role.as_str(), resource, rule)
            .await?;
        self.access.invalidate();
        tracing::info!(
            role = role.as_str(),
            resource = resource.as_str(),
            changed,
            "access changed"
        );
        Ok(changed)
    }

    fn checked_names(
        &self,
        resource: AccessResource,
        names: Vec<String>,
    ) -> Result<Vec<String>, CoreError> {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.dedup();
        if names.len() > MAX_NAMES || names.iter().any(|n| n.len() > MAX_NAME) {
            return Err(InvalidInput::AccessList {
                resource: resource.as_str(),
                max: MAX_NAMES,
                max_len: MAX_NAME,
            }
            .into());
        }
        let (known, what): (Vec<String>, _) = match resource {
            AccessResource::Models => (
                self.models().iter().map(|m| m.id.clone()).collect(),
                "model or alias",
            ),
            AccessResource::ToolServers => (self.tool_server_ids(), "tool server"),
        };
        let providers: Vec<&str> = self.models().iter().map(|m| m.provider.as_str()).collect();
        for n in &names {
            let pattern_ok = n == "*"
                || (resource == AccessResource::Models
                    && n.strip_suffix("/*").is_some_and(|p| providers.contains(&p)));
            if !pattern_ok && !known.contains(n) {
                return Err(InvalidInput::AccessName {
                    resource: resource.as_str(),
                    what,
                    name: n.clone(),
                    known: known.join(", "),
                }
                .into());
            }
        }
        Ok(names)
    }
}

// ---- groups of accounts ----

/// Rows per page of a group's members.
pub const GROUP_MEMBERS_PAGE: usize = 100;
const MEMBERS_PAGE: i64 = GROUP_MEMBERS_PAGE as i64;

impl Core {
    /// A group's page: what it gives and a page of its members (`page` from 0).
    pub async fn access_group(
        &self,
        _: &Admin,
        id: &str,
        page: u32,
    ) -> Result<GroupDetail, CoreError> {
        let group = self
            .store
            .access_group(id)
            .await?
            .ok_or(CoreError::NotFound("access group"))?;
        let sizes = self.store.access_group_sizes().await?;
        let member_list = self
            .store
            .access_group_members(id, i64::from(page) * MEMBERS_PAGE, MEMBERS_PAGE)
            .await?;
        Ok(GroupDetail {
            group: group_view(group, &sizes),
            member_list,
        })
    }

    /// Every group, by name.
    pub async fn all_access_groups(&self, _: &Admin) -> Result<Vec<AccessGroup>, CoreError> {
        Ok(self.store.access_groups().await?)
    }

    /// The groups `account` is in, by name (for its page in the console).
    pub async fn groups_of(
        &self,
        _: &Admin,
        account: &AccountId,
    ) -> Result<Vec<AccessGroup>, CoreError> {
        let ids = self.store.account_access_groups(account).await?;
        let mut groups: Vec<AccessGroup> = self
            .store
            .access_groups()
            .await?
            .into_iter()
            .filter(|g| ids.contains(&g.id))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// Creates a group that gives nothing yet (audited). Names are 1 to 64
    /// characters without control characters, unique.
    pub async fn create_access_group(
        &self,
        admin: &Admin,
        name: &str,
    ) -> Result<AccessGroup, CoreError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_GROUP_NAME
            || name.chars().any(char::is_control)
        {
            return Err(InvalidInput::GroupName {
                max: MAX_GROUP_NAME,
            }
            .into());
        }
        let group = self.store.create_access_group(&admin.actor(), name).await?;
        self.access.invalidate();
        tracing::info!(group = %group.id, name, "access group created");
        Ok(group)
    }

    /// Sets what a group gives of `resource`: the names (models, aliases,
    /// `PROVIDER/*`, `*`; tool servers), checked as for a role (audited).
    pub async fn set_group_access(
        &self,
        admin: &Admin,
        group: &str,
        resource: AccessResource,
        names: Vec<String>,
    ) -> Result<bool, CoreError> {
        let names = self.checked_names(resource, names)?;
        let changed = self
            .store
            .set_access_group_list(&admin.actor(), group, resource, &names)
            .await?;
        self.access.invalidate();
        tracing::info!(
            group,
            resource = resource.as_str(),
            changed,
            "group access changed"
        );
        Ok(changed)
    }

    /// Deletes a group; its members keep what their role and other groups give
    /// (audited).
    pub async fn delete_access_group(&self, admin: &Admin, group: &str) -> Result<(), CoreError> {
        self.store
            .delete_access_group(&admin.actor(), group)
            .await?;
        self.access.invalidate();
        tracing::info!(group, "access group deleted");
        Ok(())
    }

    /// Adds an account to a group or removes it (audited on the account); returns
    /// whether anything changed. Applies to the account's next request on every
    /// instance (memberships are read with each check, never held).
    pub async fn set_group_member(
        &self,
        admin: &Admin,
        group: &str,
        account: &AccountId,
        member: bool,
    ) -> Result<bool, CoreError> {
        let changed = self
            .store
            .set_access_group_member(&admin.actor(), group, account, member)
            .await?;
        tracing::info!(group, account = %account, member, changed, "group membership changed");
        Ok(changed)
    }

    /// The account an admin names in a form: its id, or else its exact name.
    pub async fn account_named(&self, _: &Admin, raw: &str) -> Result<AccountId, CoreError> {
        let raw = raw.trim();
        if let Some(id) = AccountId::parse(raw) {
            return Ok(id);
        }
        match self.store.account_by_name(raw).await? {
            Some(account) => Ok(account.id),
            None => Err(CoreError::NotFound("account")),
        }
    }
}
