//! Bindings of chat-surface channels to conversations, and the render state of each
//! binding (which platform messages show which reply, up to which journal seq).

use super::{Store, StoreError};
use chorus_model::ids::{ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

/// What a binding's renderer has put on screen: enough for a restarted process to
/// finish the same platform messages instead of posting new ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderState {
    /// The assistant message shown (continuations extend it in the same messages).
    pub message_id: MessageId,
    /// The run last rendered.
    pub run_id: RunId,
    /// The platform ids of the posted parts, in order.
    pub parts: Vec<String>,
    /// The last journal seq of `run_id` on screen.
    pub rendered_seq: u64,
    /// Whether the final text (with its status note) is on screen.
    pub finished: bool,
}

impl RenderState {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let parts: String = row.try_get("parts")?;
        Ok(Self {
            message_id: MessageId::from_stored(row.try_get("message_id")?),
            run_id: RunId::from_stored(row.try_get("run_id")?),
            parts: serde_json::from_str(&parts)
                .map_err(|e| StoreError::Corrupt(format!("renders.parts: {e}")))?,
            rendered_seq: row.try_get::<i64, _>("rendered_seq")?.max(0) as u64,
            finished: row.try_get::<i64, _>("finished")? != 0,
        })
    }
}

const RENDER_COLUMNS: &str = "message_id, run_id, parts, rendered_seq, finished";

impl Store {
    /// The conversation a channel of a surface is bound to.
    pub async fn binding(
        &self,
        surface: &str,
        channel_key: &str,
    ) -> Result<Option<ConversationId>, StoreError> {
        let row = sqlx::query(
            "SELECT conversation_id FROM bindings WHERE surface = $1 AND channel_key = $2",
        )
        .bind(surface)
        .bind(channel_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| r.try_get::<String, _>("conversation_id"))
            .transpose()?
            .map(ConversationId::from_stored))
    }

    /// Binds a channel to a conversation, replacing an earlier binding of it to a
    /// conversation of the same account. A channel bound to another account's
    /// conversation is left as it is and `false` comes back: the owner check and the
    /// update are one statement, so a racing rebind cannot take another's thread.
    #[must_use = "a channel bound to another account's conversation is not rebound"]
    pub async fn bind(
        &self,
        surface: &str,
        channel_key: &str,
        conversation: &ConversationId,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO bindings (surface, channel_key, conversation_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (surface, channel_key) DO UPDATE SET conversation_id = excluded.conversation_id, \
             last_rendered_seq = NULL \
             WHERE (SELECT account_id FROM conversations WHERE id = bindings.conversation_id) \
             = (SELECT account_id FROM conversations WHERE id = excluded.conversation_id)",
        )
        .bind(surface)
        .bind(channel_key)
        .bind(conversation.as_str())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The channels of a surface bound to a conversation, by channel key.
    pub async fn bindings_of_conversation(
        &self,
        surface: &str,
        conversation: &ConversationId,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel_key FROM bindings WHERE surface = $1 AND conversation_id = $2 \
             ORDER BY channel_key",
        )
        .bind(surface)
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("channel_key"))
            .collect::<Result<_, _>>()?)
    }

    /// The render state of a binding.
    pub async fn render_state(
        &self,
        surface: &str,
        channel_key: &str,
    ) -> Result<Option<RenderState>, StoreError> {
        let sql =
            format!("SELECT {RENDER_COLUMNS} FROM renders WHERE surface = $1 AND channel_key = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(surface)
            .bind(channel_key)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(RenderState::from_row).transpose()
    }

    /// Saves a binding's render state; parts not seen before are indexed so that a
    /// reaction on them finds the binding. One transaction.
    pub async fn save_render_state(
        &self,
        surface: &str,
        channel_key: &str,
        state: &RenderState,
        new_parts: &[String],
    ) -> Result<(), StoreError> {
        let parts = serde_json::to_string(&state.parts)
            .map_err(|e| StoreError::Corrupt(format!("renders.parts: {e}")))?;
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO renders (surface, channel_key, message_id, run_id, parts, rendered_seq, finished, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (surface, channel_key) DO UPDATE SET message_id = excluded.message_id, \
             run_id = excluded.run_id, parts = excluded.parts, rendered_seq = excluded.rendered_seq, \
             finished = excluded.finished, updated_at = excluded.updated_at",
        )
        .bind(surface)
        .bind(channel_key)
        .bind(state.message_id.as_str())
        .bind(state.run_id.as_str())
        .bind(parts)
        .bind(state.rendered_seq as i64)
        .bind(i64::from(state.finished))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for part in new_parts {
            sqlx::query(
                "INSERT INTO render_messages (surface, platform_message_id, channel_key, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (surface, platform_message_id) DO NOTHING",
            )
            .bind(surface)
            .bind(part)
            .bind(channel_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The renders of a surface a previous process left unfinished, oldest first.
    pub async fn unfinished_renders(
        &self,
        surface: &str,
    ) -> Result<Vec<(String, RenderState)>, StoreError> {
        let sql = format!(
            "SELECT channel_key, {RENDER_COLUMNS} FROM renders WHERE surface = $1 AND finished = 0 \
             ORDER BY updated_at"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(surface)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("channel_key")?, RenderState::from_row(r)?)))
            .collect()
    }

    /// The binding a message posted by a renderer belongs to.
    pub async fn channel_of_message(
        &self,
        surface: &str,
        platform_message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT channel_key FROM render_messages WHERE surface = $1 AND platform_message_id = $2",
        )
        .bind(surface)
        .bind(platform_message_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("channel_key")).transpose()?)
    }
}

impl Store {
    /// The surfaces a conversation is bound on (`web` for every conversation).
    pub async fn surfaces_of(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT surface FROM bindings WHERE conversation_id = $1 ORDER BY surface",
        )
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("surface"))
            .collect::<Result<_, _>>()?)
    }
}
