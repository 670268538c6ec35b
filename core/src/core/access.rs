//! The access policy on the facade: the one place that decides which models and
//! tool servers an account may use (by its role), for every model list, admission
//! and tool offer on every surface, and the admin's view and changes of it.

use super::{Core, CoreError, Forbidden, InvalidInput};
use crate::access::{AccessPolicy, Allow, RoleAccess, config::MAX_NAME, config::MAX_NAMES};
use chorus_model::{Account, Role};
use chorus_providers::ModelInfo;
use chorus_store::AccessResource;
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

/// The Access page: every role, and what may be named.
#[derive(Clone, Debug, Serialize)]
pub struct AccessView {
    pub roles: Vec<RoleAccessView>,
    /// Model ids and alias names.
    pub models: Vec<String>,
    /// MCP server ids and `sandbox`.
    pub tool_servers: Vec<String>,
    /// Seconds within which another instance applies a change.
    pub refresh_secs: u64,
}

fn source(overridden: bool) -> &'static str {
    if overridden { "override" } else { "config" }
}

impl Core {
    async fn access_policy_now(&self) -> Result<std::sync::Arc<AccessPolicy>, CoreError> {
        Ok(self.access.policy(&self.store).await?)
    }

    /// The models (and aliases) `account` may use, in the configured order.
    pub async fn models_for(&self, account: &Account) -> Result<Vec<ModelInfo>, CoreError> {
        self.models_for_role(account.role).await
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
        let policy = self.access_policy_now().await?;
        let role = account.role.as_str();
        let default = self.default_model();
        if policy.allows_model(role, default) {
            return Ok(default.to_string());
        }
        Ok(self
            .models()
            .iter()
            .find(|m| policy.allows_model(role, &m.id))
            .map_or(default, |m| m.id.as_str())
            .to_string())
    }

    /// Refuses a model that does not exist, or that `account`'s role may not use
    /// (with a message naming the model).
    pub(crate) async fn check_model_for(
        &self,
        account: &Account,
        model: &str,
    ) -> Result<(), CoreError> {
        self.check_model(model)?;
        let policy = self.access_policy_now().await?;
        if policy.allows_model(account.role.as_str(), model) {
            Ok(())
        } else {
            Err(Forbidden::ModelNotAllowed {
                model: model.to_string(),
                role: account.role.as_str(),
            }
            .into())
        }
    }

    /// The tool servers `account`'s role may use (`None`: every one).
    pub(super) async fn role_tool_servers(&self, account: &Account) -> Result<Allow, CoreError> {
        let policy = self.access_policy_now().await?;
        Ok(policy
            .roles
            .get(account.role.as_str())
            .and_then(|p| p.tool_servers.clone()))
    }

    /// The Access page: each role's lists and where they come from.
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
        Ok(AccessView {
            roles,
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
