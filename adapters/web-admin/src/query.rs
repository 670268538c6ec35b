//! The query strings of the console's lists (accounts, runs, audit log), parsed once
//! for pages and API alike into core's filters, refusing unknown values by name.

use chorus_core::{AccountSort, AuditFilter, AuditKind, Core, CoreError, InvalidInput, RunFilter};
use chorus_model::Role;
use chorus_model::ids::AccountId;
use serde::{Deserialize, Serialize};

/// Rows per page of the runs list and the audit log.
pub const PAGE: i64 = 50;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AccountsQuery {
    /// A name prefix, or an identity's exact external id or label.
    pub q: Option<String>,
    /// `spend` (default), `last_active` or `name`.
    pub sort: Option<String>,
    pub page: Option<u32>,
}

impl AccountsQuery {
    pub fn sort(&self) -> Result<AccountSort, CoreError> {
        match self.sort.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(AccountSort::default()),
            Some(s) => AccountSort::parse(s).ok_or_else(|| {
                InvalidInput::ListOption {
                    field: "sort",
                    expected: "spend, last_active, name",
                    value: s.into(),
                }
                .into()
            }),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RunsQuery {
    /// `active` (queued or streaming), or one run status.
    pub status: Option<String>,
    /// The account's name.
    pub account: Option<String>,
    pub model: Option<String>,
    pub page: Option<u32>,
}

const STATUSES: &str = "active, queued, streaming, complete, stopped, interrupted, failed";

impl RunsQuery {
    /// The store's filter; an unknown account name matches no run.
    pub async fn filter(&self, core: &Core) -> Result<Option<RunFilter>, CoreError> {
        let mut filter = RunFilter {
            offset: i64::from(self.page.unwrap_or(0)) * PAGE,
            limit: PAGE,
            model: non_empty(&self.model),
            ..RunFilter::default()
        };
        match non_empty(&self.status).as_deref() {
            None => {}
            Some("active") => filter.active = true,
            Some(
                s @ ("queued" | "streaming" | "complete" | "stopped" | "interrupted" | "failed"),
            ) => filter.status = Some(s.to_string()),
            Some(other) => {
                return Err(InvalidInput::ListOption {
                    field: "status",
                    expected: STATUSES,
                    value: other.into(),
                }
                .into());
            }
        }
        if let Some(name) = non_empty(&self.account) {
            match core.account_by_name(&name).await? {
                Some(a) => filter.account = Some(a.id),
                None => return Ok(None),
            }
        }
        Ok(Some(filter))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    /// `admin` or `security`.
    pub kind: Option<String>,
    pub action: Option<String>,
    /// An object's id (an account id, a run id, an account name for login events).
    pub object: Option<String>,
    /// Entries older than this Unix ms time (the next page).
    pub before: Option<i64>,
}

impl AuditQuery {
    pub fn filter(&self) -> Result<AuditFilter, CoreError> {
        let kind = match non_empty(&self.kind) {
            None => None,
            Some(k) => Some(AuditKind::parse(&k).ok_or(InvalidInput::ListOption {
                field: "kind",
                expected: "admin, security",
                value: k,
            })?),
        };
        Ok(AuditFilter {
            kind,
            action: non_empty(&self.action),
            object_id: non_empty(&self.object),
            before: self.before,
            limit: PAGE,
        })
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A path's account id; anything else cannot name an account.
pub fn account_id(raw: &str) -> Result<AccountId, CoreError> {
    AccountId::parse(raw).ok_or(CoreError::NotFound("account"))
}

/// `user` or `admin`, refused by name otherwise.
pub fn parse_role(role: &str) -> Result<Role, CoreError> {
    match role {
        "user" => Ok(Role::User),
        "admin" => Ok(Role::Admin),
        other => Err(InvalidInput::Role(other.into()).into()),
    }
}

/// `models` or `tool_servers`; anything else names no access list.
pub fn parse_resource(resource: &str) -> Result<chorus_core::AccessResource, CoreError> {
    chorus_core::AccessResource::parse(resource).ok_or(CoreError::NotFound("access list"))
}

/// What an access form or body sets: `config` (back to the config file), `all`, or
/// `only` the names given (a list, or text with one name per line or comma).
pub fn access_setting(
    mode: &str,
    names: Vec<String>,
) -> Result<chorus_core::AccessSetting, CoreError> {
    use chorus_core::AccessSetting;
    match mode {
        "config" => Ok(AccessSetting::Config),
        "all" => Ok(AccessSetting::All),
        "only" => Ok(AccessSetting::Only(split_names(names))),
        other => Err(InvalidInput::ListOption {
            field: "mode",
            expected: "config, all, only",
            value: other.into(),
        }
        .into()),
    }
}

/// The names of an access list: a list, or text with one name per line or comma.
pub fn split_names(names: Vec<String>) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| n.split([',', '\n', '\r']))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}
