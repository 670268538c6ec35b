//! Groups of accounts on the Access page: a named group, the models and tool servers
//! it gives its members (on top of their role's), and who is in it. Every change is
//! written with its audit entry in one transaction; core decides what the lists mean
//! and checks their names, the store keeps them.

use super::access::AccessResource;
use super::admin::admin_change;
use super::audit::{Actor, record};
use super::{Store, StoreConflict, StoreError};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// One group and what it gives its members (an empty list: nothing).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessGroup {
    pub id: String,
    pub name: String,
    pub models: Vec<String>,
    pub tool_servers: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl AccessGroup {
    /// The list of `resource`.
    pub fn list(&self, resource: AccessResource) -> &[String] {
        match resource {
            AccessResource::Models => &self.models,
            AccessResource::ToolServers => &self.tool_servers,
        }
    }

    /// The audit log's picture of the group.
    fn snapshot(&self) -> serde_json::Value {
        json!({"name": self.name, "models": self.models, "tool_servers": self.tool_servers})
    }
}

/// An account in a group, as the group's page lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupMember {
    pub account_id: String,
    pub name: String,
    pub role: String,
    pub added_at: i64,
}

const GROUP_COLUMNS: &str = "id, name, models_json, tool_servers_json, created_at, updated_at";

fn parse_list(text: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("access_groups.{column}: {e}")))
}

fn group_from_row(r: &AnyRow) -> Result<AccessGroup, StoreError> {
    Ok(AccessGroup {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        models: parse_list(&r.try_get::<String, _>("models_json")?, "models_json")?,
        tool_servers: parse_list(
            &r.try_get::<String, _>("tool_servers_json")?,
            "tool_servers_json",
        )?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn group_in(tx: &mut Tx, id: &str) -> Result<AccessGroup, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM access_groups WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("access group"))?;
    group_from_row(&row)
}

/// The names of the groups `account` is in, in name order (the audit log's picture
/// of its memberships).
async fn group_names_of(tx: &mut Tx, account: &AccountId) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT g.name FROM access_group_members m JOIN access_groups g ON g.id = m.group_id \
         WHERE m.account_id = $1 ORDER BY g.name",
    )
    .bind(account.as_str())
    .fetch_all(&mut **tx)
    .await?)
}

impl Store {
    /// Every group, in name order (a handful of rows: read whole, without members).
    pub async fn access_groups(&self) -> Result<Vec<AccessGroup>, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM access_groups ORDER BY name");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(group_from_row)
            .collect()
    }

    /// One group.
    pub async fn access_group(&self, id: &str) -> Result<Option<AccessGroup>, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM access_groups WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(group_from_row)
            .transpose()
    }

    /// How many members each group has: (group id, count), groups without any left out.
    pub async fn access_group_sizes(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_id, COUNT(*) AS n FROM access_group_members GROUP BY group_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("group_id")?, r.try_get("n")?)))
            .collect()
    }

    /// The ids of the groups `account` is in (one read of the membership index: what
    /// every access check of the account asks).
    pub async fn account_access_groups(
        &self,
        account: &AccountId,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT group_id FROM access_group_members WHERE account_id = $1 ORDER BY group_id",
        )
        .bind(account.as_str())
        .fetch_all(self.pool())
        .await?)
    }

    /// A page of a group's members, by name.
    pub async fn access_group_members(
        &self,
        group: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<GroupMember>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.role, m.added_at FROM access_group_members m \
             JOIN accounts a ON a.id = m.account_id WHERE m.group_id = $1 \
             ORDER BY a.name LIMIT $2 OFFSET $3",
        )
        .bind(group)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GroupMember {
                    account_id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    added_at: r.try_get("added_at")?,
                })
            })
            .collect()
    }

    /// Creates a group named `name` that gives nothing yet, with its audit entry.
    pub async fn create_access_group(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<AccessGroup, StoreError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM access_groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreConflict::AccessGroupNameTaken { name: name.into() }.into());
        }
        let now = now_ms();
        let group = AccessGroup {
            id: uuid::Uuid::now_v7().simple().to_string(),
            name: name.to_string(),
            models: Vec::new(),
            tool_servers: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO access_groups (id, name, models_json, tool_servers_json, created_at, \
             updated_at) VALUES ($1, $2, '[]', '[]', $3, $3)",
        )
        .bind(&group.id)
        .bind(&group.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            &admin_change(
                actor,
                "create_access_group",
                "access_group",
                &group.id,
                serde_json::Value::Null,
                group.snapshot(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Replaces what `group` gives of `resource` with `names`, with its audit entry.
    /// Returns whether anything changed (the same list is no change and no entry).
    pub async fn set_access_group_list(
        &self,
        actor: &Actor,
        group: &str,
        resource: AccessResource,
        names: &[String],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let before = group_in(&mut tx, group).await?;
        if before.list(resource) == names {
            return Ok(false);
        }
        let column = match resource {
            AccessResource::Models => "models_json",
            AccessResource::ToolServers => "tool_servers_json",
        };
        let sql = format!("UPDATE access_groups SET {column} = $1, updated_at = $2 WHERE id = $3");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json!(names).to_string())
            .bind(now_ms())
            .bind(group)
            .execute(&mut *tx)
            .await?;
        let after = group_in(&mut tx, group).await?;
        record(
            &mut tx,
            &admin_change(
                actor,
                "set_group_access",
                "access_group",
                group,
                before.snapshot(),
                after.snapshot(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a group and its memberships, with its audit entry (the group as it was
    /// and how many members it had).
    pub async fn delete_access_group(&self, actor: &Actor, group: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let before = group_in(&mut tx, group).await?;
        let members: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_group_members WHERE group_id = $1")
                .bind(group)
                .fetch_one(&mut *tx)
                .await?;
        for sql in [
            "DELETE FROM access_group_members WHERE group_id = $1",
            "DELETE FROM access_groups WHERE id = $1",
        ] {
            sqlx::query(sql).bind(group).execute(&mut *tx).await?;
        }
        let mut snapshot = before.snapshot();
        snapshot["members"] = json!(members);
        record(
            &mut tx,
            &admin_change(
                actor,
                "delete_access_group",
                "access_group",
                group,
                snapshot,
                serde_json::Value::Null,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds (`member`) or removes an account from a group, with an audit entry on the
    /// account (its groups before and after). Returns whether anything changed. The
    /// account must be live (not merged into another); removing needs only the group.
    pub async fn set_access_group_member(
        &self,
        actor: &Actor,
        group: &str,
        account: &AccountId,
        member: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        group_in(&mut tx, group).await?;
        let live = sqlx::query("SELECT id FROM accounts WHERE id = $1 AND merged_into IS NULL")
            .bind(account.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_none() && member {
            return Err(StoreError::NotFound("account"));
        }
        let before = group_names_of(&mut tx, account).await?;
        let changed = if member {
            sqlx::query(
                "INSERT INTO access_group_members (group_id, account_id, added_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (group_id, account_id) DO NOTHING",
            )
            .bind(group)
            .bind(account.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query("DELETE FROM access_group_members WHERE group_id = $1 AND account_id = $2")
                .bind(group)
                .bind(account.as_str())
                .execute(&mut *tx)
                .await?
        }
        .rows_affected()
            > 0;
        if !changed {
            return Ok(false);
        }
        let after = group_names_of(&mut tx, account).await?;
        record(
            &mut tx,
            &admin_change(
                actor,
                if member {
                    "add_to_group"
                } else {
                    "remove_from_group"
                },
                "account",
                account.as_str(),
                json!({ "groups": before }),
                json!({ "groups": after }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Moves the memberships of `old` (merged into `new`) to `new`, inside the merge's
/// transaction: the person keeps what their groups gave either account.
pub(crate) async fn merge_memberships(
    tx: &mut Tx,
    old: &AccountId,
    new: &AccountId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_group_members (group_id, account_id, added_at) \
         SELECT group_id, $1, added_at FROM access_group_members WHERE account_id = $2 \
         ON CONFLICT (group_id, account_id) DO NOTHING",
    )
    .bind(new.as_str())
    .bind(old.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM access_group_members WHERE account_id = $1")
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
