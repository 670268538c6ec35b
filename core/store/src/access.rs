//! The Access page's overrides: which models and tool servers a role may use, one
//! row per (role, resource) over the config file's `[access]` defaults. Each change
//! is written with its audit entry in one transaction. Core decides what the lists
//! mean; the store keeps them.

use super::audit::{Actor, AuditKind, Change, record};
use super::{Store, StoreError};
use chorus_model::time::now_ms;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

/// What an access rule limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessResource {
    /// Models and aliases, by name.
    Models,
    /// Tool servers (MCP servers and `sandbox`), by name.
    ToolServers,
}

impl AccessResource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Models => "models",
            Self::ToolServers => "tool_servers",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "models" => Some(Self::Models),
            "tool_servers" => Some(Self::ToolServers),
            _ => None,
        }
    }
}

/// One stored override: `allow` is `None` when every one is allowed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessRule {
    pub role: String,
    pub resource: AccessResource,
    pub allow: Option<Vec<String>>,
    pub updated_at: i64,
}

/// The audit log's picture of a rule: absent (the config decides), every one, or a list.
fn snapshot(rule: Option<&Option<Vec<String>>>) -> serde_json::Value {
    match rule {
        None => json!({"source": "config"}),
        Some(None) => json!({"source": "override", "allow": "all"}),
        Some(Some(list)) => json!({"source": "override", "allow": list}),
    }
}

fn parse_allow(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("access_rules.allow_json: {e}")))
    })
    .transpose()
}

impl Store {
    /// Every stored override (a handful of rows: read whole).
    pub async fn access_rules(&self) -> Result<Vec<AccessRule>, StoreError> {
        let rows = sqlx::query(
            "SELECT role, resource, allow_json, updated_at FROM access_rules ORDER BY role, resource",
        )
        .fetch_all(self.pool())
        .await?;
        let mut rules = Vec::with_capacity(rows.len());
        for r in rows {
            let resource: String = r.try_get("resource")?;
            let Some(resource) = AccessResource::parse(&resource) else {
                return Err(StoreError::Corrupt(format!(
                    "access_rules.resource: {resource:?}"
                )));
            };
            rules.push(AccessRule {
                role: r.try_get("role")?,
                resource,
                allow: parse_allow(r.try_get("allow_json")?)?,
                updated_at: r.try_get("updated_at")?,
            });
        }
        Ok(rules)
    }

    /// Sets (`Some`: `None` inside allows every one) or removes (`None`: back to the
    /// config) the override of `role`'s `resource`, with its audit entry, in one
    /// transaction. Returns whether anything changed (an identical rule is no change
    /// and no entry).
    pub async fn set_access_rule(
        &self,
        actor: &Actor,
        role: &str,
        resource: AccessResource,
        rule: Option<Option<Vec<String>>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let before =
            sqlx::query("SELECT allow_json FROM access_rules WHERE role = $1 AND resource = $2")
                .bind(role)
                .bind(resource.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<Option<String>, _>("allow_json"))
                .transpose()?
                .map(parse_allow)
                .transpose()?;
        if before == rule {
            return Ok(false);
        }
        match &rule {
            Some(allow) => {
                let text = allow.as_ref().map(|a| json!(a).to_string());
                sqlx::query(
                    "INSERT INTO access_rules (role, resource, allow_json, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (role, resource) DO UPDATE \
                     SET allow_json = excluded.allow_json, updated_at = excluded.updated_at",
                )
                .bind(role)
                .bind(resource.as_str())
                .bind(text)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM access_rules WHERE role = $1 AND resource = $2")
                    .bind(role)
                    .bind(resource.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let object = format!("{role}:{}", resource.as_str());
        record(
            &mut tx,
            &Change {
                kind: AuditKind::Admin,
                actor,
                action: "set_access",
                object_type: "access",
                object_id: Some(&object),
                before: snapshot(before.as_ref()),
                after: snapshot(rule.as_ref()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
