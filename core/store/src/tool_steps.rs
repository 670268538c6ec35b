//! Tool history of runs and the tool selection of conversations (migration 0004).
//!
//! A run's steps are written when a round of tool calls starts and when it ends —
//! never per token — so a run interrupted during a call keeps the calls it made.

use super::{Store, StoreError};
use chorus_model::history::ToolStep;
use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// One run's steps with the message text length before it.
type RunSteps = (usize, Vec<ToolStep>);

impl Store {
    /// Saves the tool steps of a run this owner still holds.
    pub async fn save_tool_steps(
        &self,
        run: &RunId,
        owner: &str,
        steps: &[ToolStep],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
        sqlx::query("UPDATE runs SET tool_steps = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(json)
            .bind(run.as_str())
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The tool steps of every message of a conversation, merged over its runs in
    /// order, with offsets into the message text.
    pub async fn conversation_tool_steps(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<(MessageId, Vec<ToolStep>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_id, prefix_len, tool_steps FROM runs \
             WHERE conversation_id = $1 AND tool_steps IS NOT NULL ORDER BY created_at, id",
        )
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(steps_by_message(&rows)?)
    }

    /// The tools a conversation offers (server ids and tool names).
    pub async fn conversation_tools(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<String>, StoreError> {
        let row = sqlx::query("SELECT tools FROM conversations WHERE id = $1")
            .bind(conversation.as_str())
            .fetch_optional(self.pool())
            .await?;
        let json: Option<String> = match row {
            Some(r) => r.try_get("tools")?,
            None => None,
        };
        Ok(parse_selection(json))
    }

    /// Sets the tools of a conversation `account` owns; false when it owns none such.
    pub async fn set_conversation_tools(
        &self,
        account: &AccountId,
        conversation: &ConversationId,
        tools: &[String],
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(tools).unwrap_or_else(|_| "[]".into());
        let done =
            sqlx::query("UPDATE conversations SET tools = $1 WHERE id = $2 AND account_id = $3")
                .bind(json)
                .bind(conversation.as_str())
                .bind(account.as_str())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A conversation's tool selection as stored (a JSON list, or nothing).
pub(crate) fn parse_selection(json: Option<String>) -> Vec<String> {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

/// The tool steps of each message, merged over its runs in order, from rows of
/// runs (oldest first) with `message_id`, `prefix_len` and `tool_steps` (rows
/// without steps are passed over).
pub(crate) fn steps_by_message(
    rows: &[AnyRow],
) -> Result<Vec<(MessageId, Vec<ToolStep>)>, sqlx::Error> {
    let mut by_message: Vec<(MessageId, Vec<RunSteps>)> = Vec::new();
    for row in rows {
        let Some(json) = row.try_get::<Option<String>, _>("tool_steps")? else {
            continue;
        };
        let id = MessageId::from_stored(row.try_get::<String, _>("message_id")?);
        let prefix: i64 = row.try_get("prefix_len")?;
        let steps: Vec<ToolStep> = serde_json::from_str(&json).unwrap_or_default();
        match by_message.iter_mut().find(|(m, _)| *m == id) {
            Some((_, runs)) => runs.push((prefix.max(0) as usize, steps)),
            None => by_message.push((id, vec![(prefix.max(0) as usize, steps)])),
        }
    }
    Ok(by_message
        .into_iter()
        .map(|(id, runs)| (id, chorus_model::history::merge_runs(runs)))
        .collect())
}
