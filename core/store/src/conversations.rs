//! Conversations, their message trees and surface bindings.

use super::{Store, StoreConflict, StoreError};
use crate::Tx;
use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Clone, Debug, Serialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub account_id: AccountId,
    pub title: String,
    pub model: String,
    pub system_prompt: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Conversation {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: ConversationId::from_stored(row.try_get("id")?),
            account_id: AccountId::from_stored(row.try_get("account_id")?),
            title: row.try_get("title")?,
            model: row.try_get("model")?,
            system_prompt: row.try_get("system_prompt")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// One node of a conversation tree. For an assistant message whose run is still
/// going, `content` includes the text checkpointed so far.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub id: MessageId,
    pub parent_id: Option<MessageId>,
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    pub created_at: i64,
    /// The newest run that wrote this message, if any.
    pub run_id: Option<RunId>,
    pub run_status: Option<String>,
    /// Why the newest run ended (`stop`, `length`, `stopped`, ...), once it has.
    pub run_finish_reason: Option<String>,
    pub run_error: Option<String>,
    /// Token usage of the newest run, as reported by its provider.
    pub run_prompt_tokens: Option<i64>,
    pub run_completion_tokens: Option<i64>,
}

/// The user turn that starts a run: what the user wrote and where it hangs in the tree.
#[derive(Clone, Debug)]
pub struct NewTurn {
    pub account_id: AccountId,
    pub conversation_id: ConversationId,
    pub parent_id: Option<MessageId>,
    pub content: String,
    pub model: String,
}

/// A conversation created with its first turn, in the transaction that admits the
/// turn's run (a gateway request): a refused admission leaves nothing behind.
#[derive(Clone, Debug)]
pub struct NewConversation {
    pub title: String,
    pub system_prompt: Option<String>,
    /// Kept only until then (Unix ms), and left out of conversation lists meanwhile;
    /// `None`: kept.
    pub expires_at: Option<i64>,
}

pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, account_id, title, model, system_prompt, created_at, updated_at";

impl Store {
    /// Creates a conversation and binds it to the web surface under its own id.
    pub async fn create_conversation(
        &self,
        account: &AccountId,
        title: &str,
        model: &str,
        system_prompt: Option<&str>,
    ) -> Result<Conversation, StoreError> {
        self.create_expiring_conversation(account, title, model, system_prompt, None)
            .await
    }

    /// [`Store::create_conversation`] for a conversation kept only until `expires_at`
    /// (Unix ms; `None`: kept): until then it is left out of conversation lists, and
    /// [`Store::delete_expired_conversations`] deletes it afterwards.
    pub async fn create_expiring_conversation(
        &self,
        account: &AccountId,
        title: &str,
        model: &str,
        system_prompt: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<Conversation, StoreError> {
        let id = ConversationId::generate();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        insert_conversation(
            &mut tx,
            &id,
            account,
            title,
            model,
            system_prompt,
            now,
            expires_at,
        )
        .await?;
        tx.commit().await?;
        Ok(Conversation {
            id,
            account_id: account.clone(),
            title: title.to_string(),
            model: model.to_string(),
            system_prompt: system_prompt.map(str::to_string),
            created_at: now,
            updated_at: now,
        })
    }

    /// The account's conversations, most recently active first (those kept only for a
    /// retention period left out).
    pub async fn list_conversations(
        &self,
        account: &AccountId,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE account_id = $1 \
             AND expires_at IS NULL ORDER BY updated_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(Conversation::from_row(r)?))
            .collect()
    }

    /// A conversation, only if `account` owns it.
    pub async fn conversation(
        &self,
        account: &AccountId,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 AND account_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(account.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(Conversation::from_row).transpose()?)
    }

    /// Renames a conversation `account` owns; false when it owns none by that id.
    pub async fn rename_conversation(
        &self,
        account: &AccountId,
        id: &ConversationId,
        title: &str,
    ) -> Result<bool, StoreError> {
        self.set_conversation_field(account, id, "title", title)
            .await
    }

    /// Sets the model a conversation's next replies use; false when `account` owns
    /// no conversation by that id.
    pub async fn set_conversation_model(
        &self,
        account: &AccountId,
        id: &ConversationId,
        model: &str,
    ) -> Result<bool, StoreError> {
        self.set_conversation_field(account, id, "model", model)
            .await
    }

    async fn set_conversation_field(
        &self,
        account: &AccountId,
        id: &ConversationId,
        column: &'static str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE conversations SET {column} = $1, updated_at = $2 WHERE id = $3 AND account_id = $4"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(now_ms())
            .bind(id.as_str())
            .bind(account.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a conversation `account` owns, with its messages, runs and bindings, in
    /// one transaction; refused while one of its runs is still going.
    pub async fn delete_conversation(
        &self,
        account: &AccountId,
        id: &ConversationId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let owned = sqlx::query("SELECT id FROM conversations WHERE id = $1 AND account_id = $2")
            .bind(id.as_str())
            .bind(account.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if owned.is_none() {
            return Ok(false);
        }
        let active = sqlx::query(
            "SELECT id FROM runs WHERE conversation_id = $1 AND status IN ('queued', 'streaming')",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if active.is_some() {
            return Err(StoreConflict::ConversationReplyActive.into());
        }
        delete_rows(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes up to `limit` conversations whose retention ended before `now` (Unix
    /// ms) and whose runs have all ended, with their messages and runs; returns how
    /// many. Their ledger rows stay: the ledger is never rewritten.
    pub async fn delete_expired_conversations(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM conversations c WHERE expires_at IS NOT NULL AND expires_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.conversation_id = c.id \
             AND r.status IN ('queued', 'streaming')) LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut deleted = 0;
        for id in expired {
            let mut tx = self.begin_write().await?;
            // Checked again under the write lock: a run may have started since.
            let active = sqlx::query(
                "SELECT id FROM runs WHERE conversation_id = $1 AND status IN ('queued', 'streaming')",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            if active.is_none() {
                delete_rows(&mut tx, &id).await?;
                deleted += 1;
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// Every message of a conversation in creation order, with live run text merged in.
    pub async fn messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<Message>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let (rows, runs) = message_and_run_rows(&mut conn, conversation).await?;
        Ok(messages_with_runs(&rows, &runs)?)
    }

    /// The newest message of a conversation: where a new turn hangs by default.
    pub async fn latest_message(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM messages WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(conversation.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| r.try_get::<String, _>("id").map(MessageId::from_stored))
            .transpose()?)
    }

    /// Whether `message` belongs to `conversation`.
    pub async fn message_in_conversation(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT id FROM messages WHERE id = $1 AND conversation_id = $2")
            .bind(message.as_str())
            .bind(conversation.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// The branch from the root down to `leaf`, inclusive: a run's context.
    pub async fn branch(
        &self,
        conversation: &ConversationId,
        leaf: &MessageId,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(chain_to(&self.messages(conversation).await?, leaf))
    }
}

/// A conversation's messages, oldest first (ties by id).
pub(crate) const MESSAGES_SQL: &str = "SELECT id, parent_id, role, content, model, created_at FROM messages \
     WHERE conversation_id = $1 ORDER BY created_at, id";

/// A conversation's runs, oldest first: their state for their messages, and their
/// tool steps.
pub(crate) const RUNS_SQL: &str = "SELECT id, message_id, status, text, finish_reason, error, prompt_tokens, \
     completion_tokens, prefix_len, tool_steps FROM runs WHERE conversation_id = $1 ORDER BY created_at, id";

/// A conversation's rows of [`MESSAGES_SQL`] and of [`RUNS_SQL`], on `conn`.
async fn message_and_run_rows(
    conn: &mut sqlx::AnyConnection,
    conversation: &ConversationId,
) -> Result<(Vec<AnyRow>, Vec<AnyRow>), sqlx::Error> {
    let rows = sqlx::query(MESSAGES_SQL)
        .bind(conversation.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let runs = sqlx::query(RUNS_SQL)
        .bind(conversation.as_str())
        .fetch_all(&mut *conn)
        .await?;
    Ok((rows, runs))
}

/// Messages as read with [`MESSAGES_SQL`], each with the state of its newest run
/// from [`RUNS_SQL`] (a running one's checkpointed text joined to its content).
pub(crate) fn messages_with_runs(
    rows: &[AnyRow],
    runs: &[AnyRow],
) -> Result<Vec<Message>, sqlx::Error> {
    let mut messages = rows
        .iter()
        .map(|row| {
            Ok(Message {
                id: MessageId::from_stored(row.try_get("id")?),
                parent_id: row
                    .try_get::<Option<String>, _>("parent_id")?
                    .map(MessageId::from_stored),
                role: row.try_get("role")?,
                content: row.try_get("content")?,
                model: row.try_get("model")?,
                created_at: row.try_get("created_at")?,
                run_id: None,
                run_status: None,
                run_finish_reason: None,
                run_error: None,
                run_prompt_tokens: None,
                run_completion_tokens: None,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    for run in runs {
        let message_id: String = run.try_get("message_id")?;
        let status: String = run.try_get("status")?;
        if let Some(m) = messages.iter_mut().find(|m| m.id.as_str() == message_id) {
            if status == "queued" || status == "streaming" {
                // The run's text joins the message only when the run ends.
                let text: String = run.try_get("text")?;
                m.content.push_str(&text);
            }
            m.run_id = Some(RunId::from_stored(run.try_get("id")?));
            m.run_status = Some(status);
            m.run_finish_reason = run.try_get("finish_reason")?;
            m.run_error = run.try_get("error")?;
            m.run_prompt_tokens = run.try_get("prompt_tokens")?;
            m.run_completion_tokens = run.try_get("completion_tokens")?;
        }
    }
    Ok(messages)
}

/// The messages from the root down to `leaf`, following parents; empty when `leaf`
/// is not among `all`.
pub(crate) fn chain_to(all: &[Message], leaf: &MessageId) -> Vec<Message> {
    let mut chain = Vec::new();
    let mut cursor = Some(leaf.clone());
    while let Some(id) = cursor {
        let Some(m) = all.iter().find(|m| m.id == id) else {
            break;
        };
        cursor = m.parent_id.clone();
        chain.push(m.clone());
        if chain.len() > all.len() {
            break; // a cycle would be a bug elsewhere; never loop forever on it
        }
    }
    chain.reverse();
    chain
}

/// Writes a conversation and its web binding (under its own id), in the caller's
/// transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_conversation(
    tx: &mut Tx,
    id: &ConversationId,
    account: &AccountId,
    title: &str,
    model: &str,
    system_prompt: Option<&str>,
    now: i64,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(id.as_str())
    .bind(account.as_str())
    .bind(title)
    .bind(model)
    .bind(system_prompt)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO bindings (surface, channel_key, conversation_id, created_at) VALUES ('web', $1, $1, $2)",
    )
    .bind(id.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a conversation and everything that hangs off it, in the caller's transaction.
pub(crate) async fn delete_rows(tx: &mut Tx, id: &str) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM bindings WHERE conversation_id = $1",
        "DELETE FROM renders WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)",
        "DELETE FROM runs WHERE conversation_id = $1",
        // Unlink the tree first, so its self-references never block a delete.
        "UPDATE messages SET parent_id = NULL WHERE conversation_id = $1",
        "DELETE FROM messages WHERE conversation_id = $1",
        "DELETE FROM conversations WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}
