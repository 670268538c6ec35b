//! The audit log: every admin change (who, what, on which object, before and after),
//! written in the transaction of the change so neither lands without the other, and
//! security events (failed logins, lockouts, link-code merges, a suspended account's
//! attempts), each written on its own.

use super::{Store, StoreError};
use crate::Tx;
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Who made a change: an admin account, or (no id) the CLI operator or the system.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: Option<AccountId>,
    pub name: String,
}

impl Actor {
    /// Chorus itself (security events have no acting admin).
    pub fn system() -> Self {
        Self {
            id: None,
            name: "system".into(),
        }
    }
}

/// What kind of entry: an admin's change or a security event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Admin,
    Security,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Admin => "admin",
            AuditKind::Security => "security",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(AuditKind::Admin),
            "security" => Some(AuditKind::Security),
            _ => None,
        }
    }
}

/// One change to record: the action on an object, with the object before and after.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub kind: AuditKind,
    pub actor: &'a Actor,
    /// What happened, `snake_case` (`suspend`, `grant`, `login_failed`, ...).
    pub action: &'a str,
    /// `account`, `run`, `identity`, ...
    pub object_type: &'a str,
    pub object_id: Option<&'a str>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// One entry of the audit log as read back.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub id: String,
    pub created_at: i64,
    pub kind: String,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which entries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub kind: Option<AuditKind>,
    pub action: Option<String>,
    /// Entries about this object (an account id, a run id, ...).
    pub object_id: Option<String>,
    /// Entries older than this (Unix ms): the next page.
    pub before: Option<i64>,
    pub limit: i64,
}

/// Writes `change` inside the caller's transaction.
pub(crate) async fn record(tx: &mut Tx, change: &Change<'_>) -> Result<(), StoreError> {
    let json = |v: &serde_json::Value| (!v.is_null()).then(|| v.to_string());
    sqlx::query(
        "INSERT INTO audit_log (id, created_at, kind, actor_id, actor_name, action, object_type, \
         object_id, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_ms())
    .bind(change.kind.as_str())
    .bind(change.actor.id.as_ref().map(AccountId::as_str))
    .bind(change.actor.name.as_str())
    .bind(change.action)
    .bind(change.object_type)
    .bind(change.object_id)
    .bind(json(&change.before))
    .bind(json(&change.after))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn record_from_row(r: &AnyRow) -> Result<AuditRecord, StoreError> {
    let json = |col: &str| -> Result<Option<serde_json::Value>, StoreError> {
        match r.try_get::<Option<String>, _>(col)? {
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("audit_log.{col}: {e}"))),
            None => Ok(None),
        }
    };
    Ok(AuditRecord {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        kind: r.try_get("kind")?,
        actor_id: r.try_get("actor_id")?,
        actor_name: r.try_get("actor_name")?,
        action: r.try_get("action")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        before: json("before_json")?,
        after: json("after_json")?,
    })
}

impl Store {
    /// Records a security event on its own (it changes nothing else).
    pub async fn record_event(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        record(&mut tx, change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries matching `filter`, newest first (indexed by time, kind and object).
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        // Each condition is either applied or made true by a NULL parameter, so the
        // statement and its placeholders are fixed.
        let rows = sqlx::query(
            "SELECT id, created_at, kind, actor_id, actor_name, action, object_type, object_id, \
             before_json, after_json FROM audit_log \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR object_id = $3) AND created_at < $4 \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(filter.kind.map(AuditKind::as_str))
        .bind(filter.action.as_deref())
        .bind(filter.object_id.as_deref())
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(filter.limit.clamp(1, 10_000))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }
}
