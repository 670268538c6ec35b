//! Runs: the generations of assistant messages, their leases and checkpoints.
//!
//! A run's text lives in `runs.text` while it streams (checkpointed in batches, never
//! per token) and is appended to its message in the same transaction that ends it.

use super::{Store, StoreError};
use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use chorus_model::run::RunStatus;

mod checkpoint;
mod finish;
mod turn;

pub use checkpoint::Checkpoint;

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub id: RunId,
    pub account_id: AccountId,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub continues_run_id: Option<RunId>,
    pub model: String,
    pub status: RunStatus,
    /// The text this run produced (checkpointed while streaming, final once ended).
    pub text: String,
    /// Byte length of the message text before this run.
    #[serde(skip)]
    pub prefix_len: i64,
    pub checkpoint_seq: i64,
    pub finish_reason: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Of the prompt tokens, those served from the provider's cache.
    pub cached_prompt_tokens: Option<i64>,
    /// Of the completion tokens, those spent on hidden reasoning.
    pub reasoning_tokens: Option<i64>,
    #[serde(skip)]
    pub lease_owner: Option<String>,
    #[serde(skip)]
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl Run {
    /// Whether `continue` can go on with this run: stopped, interrupted, failed, or
    /// cut off by the length or tool step limit.
    pub fn is_continuable(&self) -> bool {
        match self.status {
            RunStatus::Stopped | RunStatus::Interrupted | RunStatus::Failed => true,
            RunStatus::Complete => matches!(
                self.finish_reason.as_deref(),
                Some("length" | "max_tool_steps")
            ),
            RunStatus::Queued | RunStatus::Streaming => false,
        }
    }
}

impl Run {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: RunId::from_stored(row.try_get("id")?),
            account_id: AccountId::from_stored(row.try_get("account_id")?),
            conversation_id: ConversationId::from_stored(row.try_get("conversation_id")?),
            message_id: MessageId::from_stored(row.try_get("message_id")?),
            continues_run_id: row
                .try_get::<Option<String>, _>("continues_run_id")?
                .map(RunId::from_stored),
            model: row.try_get("model")?,
            status: RunStatus::parse(&row.try_get::<String, _>("status")?),
            text: row.try_get("text")?,
            prefix_len: row.try_get("prefix_len")?,
            checkpoint_seq: row.try_get("checkpoint_seq")?,
            finish_reason: row.try_get("finish_reason")?,
            error: row.try_get("error")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cached_prompt_tokens: row.try_get("cached_prompt_tokens")?,
            reasoning_tokens: row.try_get("reasoning_tokens")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
}

/// How a run ended, written in one transaction with the message text.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub text: String,
    pub seq: i64,
    pub finish_reason: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_prompt_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
}

const RUN_COLUMNS: &str = "id, account_id, conversation_id, message_id, continues_run_id, model, status, text, prefix_len, \
    checkpoint_seq, finish_reason, error, prompt_tokens, completion_tokens, cached_prompt_tokens, reasoning_tokens, lease_owner, lease_expires_at, \
    created_at, updated_at, finished_at";

/// [`RUN_COLUMNS`] of a table aliased `r`.
pub(crate) const RUN_COLUMNS_R: &str = "r.id, r.account_id, r.conversation_id, r.message_id, r.continues_run_id, r.model, r.status, r.text, r.prefix_len, \
    r.checkpoint_seq, r.finish_reason, r.error, r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens, r.reasoning_tokens, r.lease_owner, r.lease_expires_at, \
    r.created_at, r.updated_at, r.finished_at";

/// The ids a new turn created.
#[derive(Clone, Debug)]
pub struct TurnIds {
    pub user_message_id: MessageId,
    pub assistant_message_id: MessageId,
    pub run_id: RunId,
}

impl Store {
    pub async fn run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(Run::from_row).transpose()?)
    }

    /// The newest run of a conversation (what `stop` and `continue` of a chat
    /// surface act on).
    pub async fn latest_run_of_conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<Run>, StoreError> {
        self.latest_run_where("conversation_id", conversation.as_str())
            .await
    }

    /// The newest run of an assistant message (a continuation is newer than the run
    /// it continues).
    pub async fn latest_run_of_message(
        &self,
        message: &MessageId,
    ) -> Result<Option<Run>, StoreError> {
        self.latest_run_where("message_id", message.as_str()).await
    }

    /// The newest run whose `column` (an indexed id column, never user input) is `id`.
    async fn latest_run_where(
        &self,
        column: &'static str,
        id: &str,
    ) -> Result<Option<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {column} = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(Run::from_row).transpose()?)
    }

    /// The content of a message as committed (without any active run's text).
    pub async fn message_content(&self, id: &MessageId) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT content FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        Ok(row.try_get("content")?)
    }

    /// The prompt tokens estimated when run `id` started (what a run that ended
    /// without reported usage is charged for its prompt).
    pub async fn run_prompt_estimate(&self, id: &RunId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT prompt_estimate FROM runs WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>("prompt_estimate")?.unwrap_or(0),
            None => 0,
        })
    }

    /// Asks whichever instance runs `id` to stop it (seen at its next checkpoint).
    pub async fn request_stop(&self, id: &RunId) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET stop_requested = 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Active runs whose lease has lapsed (their instance died), plus, when given, every
    /// active run of `restarted_owner`: an instance that just started owns no run yet,
    /// so any run leased to its name was left by its previous life.
    pub async fn orphaned_runs(
        &self,
        restarted_owner: Option<&str>,
    ) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'streaming') \
             AND (lease_expires_at < $1 OR lease_owner = $2)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(restarted_owner)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(Run::from_row(r)?)).collect()
    }
}
