//! Runs: the generations of assistant messages, their leases and checkpoints.
//!
//! A run's text lives in `runs.text` while it streams (checkpointed in batches, never
//! per token) and is appended to its message in the same transaction that ends it.

use super::conversations::insert_conversation;
use super::group_commit::write_fn;
use super::ledger::{Admission, admit, charge_run};
use super::stats::record_run_end;
use super::{Backend, NewConversation, NewTurn, Store, StoreConflict, StoreError};
use crate::Tx;
use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use chorus_model::money::Charge;
use chorus_model::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::Arc;

pub use chorus_model::run::RunStatus;

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
    /// Writes the user message, the empty assistant message and its queued run, leased
    /// to `owner`, in one transaction.
    pub async fn start_turn(
        &self,
        turn: &NewTurn,
        owner: &str,
        lease_until: i64,
    ) -> Result<TurnIds, StoreError> {
        self.start_turn_admitted(turn, owner, lease_until, &Admission::default())
            .await
    }

    /// [`Store::start_turn`] once `admission` holds for the account (decided under a
    /// lock on its row, in the same transaction); `Refused` otherwise, writing nothing.
    pub async fn start_turn_admitted(
        &self,
        turn: &NewTurn,
        owner: &str,
        lease_until: i64,
        admission: &Admission,
    ) -> Result<TurnIds, StoreError> {
        self.write_turn(turn, None, owner, lease_until, admission)
            .await
    }

    /// Creates `conversation` (its id is `turn.conversation_id`) with the turn's two
    /// messages and its run, in the one transaction that admits the run: a refused
    /// admission writes nothing at all.
    pub async fn start_conversation_turn(
        &self,
        conversation: &NewConversation,
        turn: &NewTurn,
        owner: &str,
        lease_until: i64,
        admission: &Admission,
    ) -> Result<TurnIds, StoreError> {
        self.write_turn(turn, Some(conversation), owner, lease_until, admission)
            .await
    }

    async fn write_turn(
        &self,
        turn: &NewTurn,
        conversation: Option<&NewConversation>,
        owner: &str,
        lease_until: i64,
        admission: &Admission,
    ) -> Result<TurnIds, StoreError> {
        let write = Arc::new(TurnWrite {
            ids: TurnIds {
                user_message_id: MessageId::generate(),
                assistant_message_id: MessageId::generate(),
                run_id: RunId::generate(),
            },
            turn: turn.clone(),
            conversation: conversation.cloned(),
            owner: owner.to_string(),
            lease_until,
            admission: admission.clone(),
            backend: self.backend(),
        });
        let ids = write.ids.clone();
        self.write(write_fn(move |tx| {
            let write = write.clone();
            Box::pin(async move { write.apply(tx).await })
        }))
        .await?;
        Ok(ids)
    }

    /// Starts a run that extends the message of `previous`, unless another run on that
    /// message is still active.
    pub async fn start_continuation(
        &self,
        previous: &Run,
        model: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<RunId, StoreError> {
        self.start_continuation_admitted(previous, model, owner, lease_until, &Admission::default())
            .await
    }

    /// [`Store::start_continuation`] once `admission` holds for the account.
    pub async fn start_continuation_admitted(
        &self,
        previous: &Run,
        model: &str,
        owner: &str,
        lease_until: i64,
        admission: &Admission,
    ) -> Result<RunId, StoreError> {
        let write = Arc::new(ContinuationWrite {
            id: RunId::generate(),
            previous: previous.clone(),
            model: model.to_string(),
            owner: owner.to_string(),
            lease_until,
            admission: admission.clone(),
            backend: self.backend(),
        });
        let id = write.id.clone();
        self.write(write_fn(move |tx| {
            let write = write.clone();
            Box::pin(async move { write.apply(tx).await })
        }))
        .await?;
        Ok(id)
    }

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

    /// Saves the text so far and renews the lease in one write. Returns whether a stop
    /// was requested, or `NotFound` when this instance no longer holds the lease.
    pub async fn checkpoint(
        &self,
        id: &RunId,
        owner: &str,
        text: &str,
        seq: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().acquire().await?;
        checkpoint_on(&mut conn, id, owner, text, seq, lease_until)
            .await?
            .ok_or(StoreError::NotFound("leased run"))
    }

    /// Checkpoints many runs in few transactions (the hot path of a busy instance).
    /// For each run: `Some(stop_requested)`, or `None` when its lease is lost.
    pub async fn checkpoint_many(
        &self,
        owner: &str,
        runs: &[(RunId, Checkpoint)],
        lease_until: i64,
    ) -> Result<Vec<Option<bool>>, StoreError> {
        let mut results = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(256) {
            let mut tx = self.begin_write().await?;
            for (id, cp) in chunk {
                results
                    .push(checkpoint_on(&mut tx, id, owner, &cp.text, cp.seq, lease_until).await?);
            }
            tx.commit().await?;
        }
        Ok(results)
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

    /// Ends an active run held by `owner` and appends its text to the message, in
    /// one transaction. Returns false when the run was no longer this owner's to end.
    pub async fn finish_run(
        &self,
        id: &RunId,
        owner: &str,
        outcome: &RunOutcome,
    ) -> Result<bool, StoreError> {
        self.finish_run_charged(id, owner, outcome, None).await
    }

    /// [`Store::finish_run`] that also charges the run's usage to its account, in the
    /// same transaction: a run that ends is charged exactly once.
    pub async fn finish_run_charged(
        &self,
        id: &RunId,
        owner: &str,
        outcome: &RunOutcome,
        charge: Option<&Charge>,
    ) -> Result<bool, StoreError> {
        let write = Arc::new(FinishWrite {
            id: id.clone(),
            owner: owner.to_string(),
            outcome: outcome.clone(),
            charge: charge.cloned(),
            backend: self.backend(),
        });
        self.write(write_fn(move |tx| {
            let write = write.clone();
            Box::pin(async move { write.apply(tx).await })
        }))
        .await
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

    /// Marks an orphaned run interrupted with `text` (its checkpoint, or more if the
    /// journal had more), if it is still orphaned: the lease is unchanged since it was
    /// read. Returns whether this call did it.
    pub async fn interrupt_orphan(
        &self,
        run: &Run,
        text: &str,
        seq: i64,
    ) -> Result<bool, StoreError> {
        self.interrupt_orphan_charged(run, text, seq, None).await
    }

    /// [`Store::interrupt_orphan`] that also charges the run, in the same transaction.
    pub async fn interrupt_orphan_charged(
        &self,
        run: &Run,
        text: &str,
        seq: i64,
        charge: Option<&Charge>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        lock_run_account(&mut tx, self.backend(), &run.id).await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET status = 'interrupted', text = $1, checkpoint_seq = $2, finish_reason = 'interrupted', \
             updated_at = $3, finished_at = $3, lease_expires_at = NULL \
             WHERE id = $4 AND status IN ('queued', 'streaming') AND lease_owner = $5 AND lease_expires_at = $6 \
             RETURNING account_id",
        )
        .bind(text)
        .bind(seq)
        .bind(now)
        .bind(run.id.as_str())
        .bind(run.lease_owner.as_deref())
        .bind(run.lease_expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            return Ok(false);
        };
        let account = AccountId::from_stored(row.try_get("account_id")?);
        sqlx::query("UPDATE messages SET content = content || $1 WHERE id = $2")
            .bind(text)
            .bind(run.message_id.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(charge) = charge {
            charge_run(&mut tx, &account, &run.id, charge).await?;
        }
        record_run_end(
            &mut tx,
            &run.id,
            now,
            false,
            charge.map_or(0, |c| c.tokens.prompt),
            charge.map_or(0, |c| c.tokens.completion),
            charge.map_or(0, |c| c.amount),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Locks the row of the account that owns run `id`, before the run's own row: the
/// order every balance-changing transaction takes (account, then run), so ending a run
/// never deadlocks with starting one or with a merge. One statement on PostgreSQL; on
/// SQLite nothing to do, as the write transaction (`BEGIN IMMEDIATE`) already excludes
/// every other writer.
async fn lock_run_account(tx: &mut Tx, backend: Backend, id: &RunId) -> Result<(), StoreError> {
    if backend == Backend::Sqlite {
        return Ok(());
    }
    sqlx::query(
        "UPDATE accounts SET balance = balance \
         WHERE id = (SELECT account_id FROM runs WHERE id = $1) AND status = 'active'",
    )
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new turn to write: what [`Store::start_turn_admitted`] and
/// [`Store::start_conversation_turn`] apply (possibly twice: see `group_commit.rs`).
struct TurnWrite {
    ids: TurnIds,
    turn: NewTurn,
    conversation: Option<NewConversation>,
    owner: String,
    lease_until: i64,
    admission: Admission,
    backend: Backend,
}

impl TurnWrite {
    /// Admits the run, then writes the conversation (when new), both messages and the
    /// run. A refusal comes before any write.
    async fn apply(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let (turn, ids) = (&self.turn, &self.ids);
        let now = now_ms();
        admit(tx, self.backend, &turn.account_id, &self.admission).await?;
        if let Some(c) = &self.conversation {
            insert_conversation(
                tx,
                &turn.conversation_id,
                &turn.account_id,
                &c.title,
                &turn.model,
                c.system_prompt.as_deref(),
                now,
                c.expires_at,
            )
            .await?;
        }
        // Both messages in one statement: one round trip fewer on every admission.
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) \
             VALUES ($1, $2, $3, 'user', $4, NULL, $5), ($6, $2, $1, 'assistant', '', $7, $8)",
        )
        .bind(ids.user_message_id.as_str())
        .bind(turn.conversation_id.as_str())
        .bind(turn.parent_id.as_ref().map(|p| p.as_str()))
        .bind(&turn.content)
        .bind(now)
        .bind(ids.assistant_message_id.as_str())
        .bind(&turn.model)
        .bind(now + 1)
        .execute(&mut **tx)
        .await?;
        insert_run(
            tx,
            &ids.run_id,
            &turn.account_id,
            &turn.conversation_id,
            &ids.assistant_message_id,
            None,
            &turn.model,
            &self.owner,
            self.lease_until,
            &self.admission,
        )
        .await?;
        if self.conversation.is_none() {
            // A new conversation was written with these values already.
            sqlx::query("UPDATE conversations SET updated_at = $1, model = $2 WHERE id = $3")
                .bind(now)
                .bind(&turn.model)
                .bind(turn.conversation_id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// A continuation to write ([`Store::start_continuation_admitted`]).
struct ContinuationWrite {
    id: RunId,
    previous: Run,
    model: String,
    owner: String,
    lease_until: i64,
    admission: Admission,
    backend: Backend,
}

impl ContinuationWrite {
    async fn apply(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let previous = &self.previous;
        admit(tx, self.backend, &previous.account_id, &self.admission).await?;
        let active = sqlx::query(
            "SELECT id FROM runs WHERE message_id = $1 AND status IN ('queued', 'streaming')",
        )
        .bind(previous.message_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if active.is_some() {
            return Err(StoreConflict::MessageRunActive.into());
        }
        insert_run(
            tx,
            &self.id,
            &previous.account_id,
            &previous.conversation_id,
            &previous.message_id,
            Some(&previous.id),
            &self.model,
            &self.owner,
            self.lease_until,
            &self.admission,
        )
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(previous.conversation_id.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A run's end to write ([`Store::finish_run_charged`]).
struct FinishWrite {
    id: RunId,
    owner: String,
    outcome: RunOutcome,
    charge: Option<Charge>,
    backend: Backend,
}

impl FinishWrite {
    /// Ends the run if it is still active and `owner`'s, appends its text to the
    /// message and charges it; false (writing nothing) when it was not ours to end.
    async fn apply(&self, tx: &mut Tx) -> Result<bool, StoreError> {
        let (id, outcome) = (&self.id, &self.outcome);
        lock_run_account(tx, self.backend, id).await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, text = $2, checkpoint_seq = $3, finish_reason = $4, error = $5, \
             prompt_tokens = $6, completion_tokens = $7, cached_prompt_tokens = $8, reasoning_tokens = $9, \
             updated_at = $10, finished_at = $10, lease_expires_at = NULL \
             WHERE id = $11 AND lease_owner = $12 AND status IN ('queued', 'streaming') RETURNING message_id, account_id",
        )
        .bind(outcome.status.as_str())
        .bind(&outcome.text)
        .bind(outcome.seq)
        .bind(outcome.finish_reason.as_deref())
        .bind(outcome.error.as_deref())
        .bind(outcome.prompt_tokens)
        .bind(outcome.completion_tokens)
        .bind(outcome.cached_prompt_tokens)
        .bind(outcome.reasoning_tokens)
        .bind(now)
        .bind(id.as_str())
        .bind(&self.owner)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = updated else {
            return Ok(false);
        };
        let message_id: String = row.try_get("message_id")?;
        let account = AccountId::from_stored(row.try_get("account_id")?);
        sqlx::query("UPDATE messages SET content = content || $1 WHERE id = $2")
            .bind(&outcome.text)
            .bind(&message_id)
            .execute(&mut **tx)
            .await?;
        if let Some(charge) = &self.charge {
            charge_run(tx, &account, id, charge).await?;
        }
        record_run_end(
            tx,
            id,
            now,
            outcome.status == RunStatus::Failed,
            outcome.prompt_tokens.unwrap_or(0),
            outcome.completion_tokens.unwrap_or(0),
            self.charge.as_ref().map_or(0, |c| c.amount),
        )
        .await?;
        Ok(true)
    }
}

/// A run's text to save: everything up to journal seq `seq`.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub text: String,
    pub seq: i64,
}

/// One checkpoint write: marks the run streaming, saves its text, renews its lease,
/// and reads back whether a stop was requested; `None` when `owner` lost the lease.
async fn checkpoint_on(
    conn: &mut sqlx::AnyConnection,
    id: &RunId,
    owner: &str,
    text: &str,
    seq: i64,
    lease_until: i64,
) -> Result<Option<bool>, StoreError> {
    let row = sqlx::query(
        "UPDATE runs SET status = 'streaming', text = $1, checkpoint_seq = $2, lease_expires_at = $3, updated_at = $4 \
         WHERE id = $5 AND lease_owner = $6 AND status IN ('queued', 'streaming') RETURNING stop_requested",
    )
    .bind(text)
    .bind(seq)
    .bind(lease_until)
    .bind(now_ms())
    .bind(id.as_str())
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<i64, _>("stop_requested")? != 0),
        None => None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn insert_run(
    tx: &mut Tx,
    id: &RunId,
    account: &AccountId,
    conversation: &ConversationId,
    message: &MessageId,
    continues: Option<&RunId>,
    model: &str,
    owner: &str,
    lease_until: i64,
    admission: &Admission,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO runs (id, account_id, conversation_id, message_id, continues_run_id, model, status, text, \
         prefix_len, checkpoint_seq, stop_requested, lease_owner, lease_expires_at, created_at, updated_at, prompt_estimate, \
         reserved) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', '', \
         (SELECT octet_length(content) FROM messages WHERE id = $4), 0, 0, $7, $8, $9, $9, $10, $11)",
    )
    .bind(id.as_str())
    .bind(account.as_str())
    .bind(conversation.as_str())
    .bind(message.as_str())
    .bind(continues.map(|c| c.as_str()))
    .bind(model)
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(admission.prompt_estimate)
    .bind(admission.reservation)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
