//! Runs: the generations of assistant messages, their leases and checkpoints.
//!
//! A run's text lives in `runs.text` while it streams (checkpointed in batches, never
//! per token) and is appended to its message in the same transaction that ends it.

use super::group_commit::write_fn;
use super::ledger::{Admission, admit, charge_run, check_admission};
use super::stats::{HOUR_MS, MINUTE_MS, record_run_end, run_end_buckets, run_shard};
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

/// A run's end on SQLite, several statements each of which writes only when the one
/// before it did (`changes()` is the row count of the statement before): the run's
/// row (`$11`, if still active and `$12`'s; it returns `ended`), its message's text,
/// the rollup's minute and hour rows (`$13`..`$21`).
macro_rules! finish_sqlite_sql {
    () => {
        "UPDATE runs SET status = $1, text = $2, checkpoint_seq = $3, finish_reason = $4, error = $5, \
         prompt_tokens = $6, completion_tokens = $7, cached_prompt_tokens = $8, reasoning_tokens = $9, \
         updated_at = $10, finished_at = $10, lease_expires_at = NULL \
         WHERE id = $11 AND lease_owner = $12 AND status IN ('queued', 'streaming') RETURNING 'ended' AS what; \
         UPDATE messages SET content = content || $2 \
         WHERE id = (SELECT message_id FROM runs WHERE id = $11) AND changes() = 1; \
         INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         SELECT column1, column2, $17, 1, $18, $19, $20, $21 FROM (VALUES ($13, $14), ($15, $16)) \
         WHERE changes() = 1 \
         ON CONFLICT (span, bucket, shard) DO UPDATE SET \
         replies = run_stats.replies + excluded.replies, failed = run_stats.failed + excluded.failed, \
         prompt_tokens = run_stats.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = run_stats.completion_tokens + excluded.completion_tokens, \
         cost = run_stats.cost + excluded.cost"
    };
}

/// The charge of a run's end on SQLite, after [`finish_sqlite_sql`] (whose rollup
/// statement wrote 2 rows when the run ended): its ledger row `$22` (returning
/// `charged`; none when the run was charged already), then the balance, only if that
/// row is there.
macro_rules! charge_sqlite_sql {
    () => {
        "INSERT INTO ledger (id, account_id, amount, reason, run_id, model, prompt_tokens, completion_tokens, \
         cached_prompt_tokens, note, created_at) \
         SELECT $22, account_id, -$23, 'run_usage', $11, $24, $25, $26, $27, NULL, $10 FROM runs \
         WHERE id = $11 AND changes() = 2 \
         ON CONFLICT (run_id) DO NOTHING RETURNING 'charged' AS what; \
         UPDATE accounts SET balance = balance - $23, spent = spent + $23 \
         WHERE id = (SELECT account_id FROM ledger WHERE id = $22)"
    };
}

/// A run's end on PostgreSQL, the `WITH` clauses of one statement: the run's row
/// (`r`), its message's text and the rollup's rows, each written from `r`'s row, so
/// not at all when the run was not ours to end.
macro_rules! finish_postgres_sql {
    () => {
        "WITH r AS (UPDATE runs SET status = $1, text = $2, checkpoint_seq = $3, finish_reason = $4, error = $5, \
         prompt_tokens = $6, completion_tokens = $7, cached_prompt_tokens = $8, reasoning_tokens = $9, \
         updated_at = $10, finished_at = $10, lease_expires_at = NULL \
         WHERE id = $11 AND lease_owner = $12 AND status IN ('queued', 'streaming') \
         RETURNING message_id, account_id), \
         m AS (UPDATE messages SET content = messages.content || $2 FROM r WHERE messages.id = r.message_id), \
         s AS (INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost) \
         SELECT v.span, v.bucket, $17, 1, $18, $19, $20, $21 FROM r, (VALUES ($13, $14), ($15, $16)) AS v(span, bucket) \
         ON CONFLICT (span, bucket, shard) DO UPDATE SET \
         replies = run_stats.replies + excluded.replies, failed = run_stats.failed + excluded.failed, \
         prompt_tokens = run_stats.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = run_stats.completion_tokens + excluded.completion_tokens, \
         cost = run_stats.cost + excluded.cost)"
    };
}

/// A new turn's two messages (`$2` conversation, `$3`/`$4` user/assistant message,
/// `$6` parent, `$7` content, `$8` model, `$9`/`$14` their times); on SQLite only if
/// the account `$1` is active (the admission before it in the same query decides
/// that: an inactive or unknown account writes nothing and fails no foreign key).
macro_rules! turn_messages_sql {
    (Postgres) => {
        concat!(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) VALUES ",
            turn_messages_sql!(rows)
        )
    };
    (Sqlite) => {
        concat!(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) \
             SELECT * FROM (VALUES ",
            turn_messages_sql!(rows),
            ") AS v",
            active_account_sql!()
        )
    };
    (rows) => {
        "($3, $2, $6, 'user', $7, NULL, $9), ($4, $2, $3, 'assistant', '', $8, $14)"
    };
}

/// A new turn's queued run on its (empty) assistant message (`$5` run, `$1` account,
/// `$10`/`$11` lease, `$12` prompt estimate, `$13` reservation); on SQLite only if the
/// account is active.
macro_rules! turn_run_sql {
    (Postgres) => {
        concat!(turn_run_sql!(columns), " VALUES (", turn_run_sql!(values), ")")
    };
    (Sqlite) => {
        concat!(
            turn_run_sql!(columns),
            " SELECT ",
            turn_run_sql!(values),
            active_account_sql!()
        )
    };
    (columns) => {
        "INSERT INTO runs (id, account_id, conversation_id, message_id, continues_run_id, model, status, text, \
         prefix_len, checkpoint_seq, stop_requested, lease_owner, lease_expires_at, created_at, updated_at, \
         prompt_estimate, reserved)"
    };
    (values) => {
        "$5, $1, $2, $4, NULL, $8, 'queued', '', 0, 0, 0, $10, $11, $9, $9, $12, $13"
    };
}

/// A new conversation (`$2`, of account `$1`, `$15` title, `$16` system prompt,
/// `$17` expiry) and its web binding; on SQLite only if the account is active.
macro_rules! turn_conversation_sql {
    (Postgres) => {
        "WITH c AS (INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
         VALUES ($2, $1, $15, $8, $16, $9, $9, $17)), \
         b AS (INSERT INTO bindings (surface, channel_key, conversation_id, created_at) VALUES ('web', $2, $2, $9)), "
    };
    (Sqlite) => {
        concat!(
            "INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
             SELECT $2, $1, $15, $8, $16, $9, $9, $17",
            active_account_sql!(),
            "; INSERT INTO bindings (surface, channel_key, conversation_id, created_at) SELECT 'web', $2, $2, $9",
            active_account_sql!(),
            "; "
        )
    };
}

/// The condition of a new turn's rows on SQLite: account `$1` is active.
macro_rules! active_account_sql {
    () => {
        " WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status = 'active')"
    };
}

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

    /// Checkpoints many runs in few transactions (the hot path of a busy instance),
    /// up to [`CHECKPOINT_BATCH`] runs per statement. For each run:
    /// `Some(stop_requested)`, or `None` when its lease is lost.
    pub async fn checkpoint_many(
        &self,
        owner: &str,
        runs: &[(RunId, Checkpoint)],
        lease_until: i64,
    ) -> Result<Vec<Option<bool>>, StoreError> {
        let mut results = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(256) {
            let mut tx = self.begin_write().await?;
            let mut rest = chunk;
            while !rest.is_empty() {
                // Statements of a few sizes only (powers of two), each prepared once
                // per connection: 45 runs are written as 32 + 8 + 4 + 1.
                let n = CHECKPOINT_BATCH.min(1 << rest.len().ilog2());
                let (batch, tail) = rest.split_at(n);
                results.extend(checkpoint_batch(&mut tx, owner, batch, lease_until).await?);
                rest = tail;
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
    /// Admits the run and writes the conversation (when new), both messages and the
    /// run, in one round trip to the database (see [`TurnWrite::apply_sqlite`] and
    /// [`TurnWrite::apply_postgres`]). A refusal is an error, so the caller's
    /// transaction (or the group commit's savepoint) rolls back everything the turn
    /// wrote: a refused admission leaves nothing behind.
    async fn apply(&self, tx: &mut Tx) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => self.apply_sqlite(tx).await,
            Backend::Postgres => self.apply_postgres(tx).await,
        }
    }

    /// The statement that writes the turn's rows, parameters `$1`..`$17` as
    /// [`TurnWrite::bind`] binds them; on SQLite several statements in one query
    /// (sqlx runs each in turn, binding `$n` by number across them), on PostgreSQL
    /// one statement whose data-modifying `WITH` clauses write together (the
    /// foreign keys between the new rows are checked at the end of the statement).
    fn rows_sql(&self) -> &'static str {
        match (self.backend, self.conversation.is_some()) {
            (Backend::Sqlite, true) => concat!(
                turn_conversation_sql!(Sqlite),
                turn_messages_sql!(Sqlite),
                "; ",
                turn_run_sql!(Sqlite),
            ),
            (Backend::Sqlite, false) => concat!(
                turn_messages_sql!(Sqlite),
                "; ",
                turn_run_sql!(Sqlite),
                "; UPDATE conversations SET updated_at = $9, model = $8 WHERE id = $2",
            ),
            (Backend::Postgres, true) => concat!(
                turn_conversation_sql!(Postgres),
                "m AS (",
                turn_messages_sql!(Postgres),
                ") ",
                turn_run_sql!(Postgres),
            ),
            (Backend::Postgres, false) => concat!(
                "WITH u AS (UPDATE conversations SET updated_at = $9, model = $8 WHERE id = $2), ",
                "m AS (",
                turn_messages_sql!(Postgres),
                ") ",
                turn_run_sql!(Postgres),
            ),
        }
    }

    /// Binds `$1`..`$14`, and `$15`..`$17` when the conversation is new (PostgreSQL
    /// refuses a parameter its statement does not use).
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        now: i64,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let (turn, ids) = (&self.turn, &self.ids);
        let query = query
            .bind(turn.account_id.as_str())
            .bind(turn.conversation_id.as_str())
            .bind(ids.user_message_id.as_str())
            .bind(ids.assistant_message_id.as_str())
            .bind(ids.run_id.as_str())
            .bind(turn.parent_id.as_ref().map(|p| p.as_str()))
            .bind(&turn.content)
            .bind(&turn.model)
            .bind(now)
            .bind(&self.owner)
            .bind(self.lease_until)
            .bind(self.admission.prompt_estimate)
            .bind(self.admission.reservation)
            .bind(now + 1);
        match &self.conversation {
            Some(c) => query
                .bind(&c.title)
                .bind(c.system_prompt.as_deref())
                .bind(c.expires_at),
            None => query,
        }
    }

    /// SQLite: the admission (the account's check, its "last activity" to the
    /// minute, and what its active runs count and hold) and the rows in one query.
    /// The write transaction excludes every other writer, so what the admission
    /// statement returns still holds when the rows are written; the decision is made
    /// here on what it returned, and a refusal rolls the rows back.
    async fn apply_sqlite(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let admission = &self.admission;
        let decides = admission.decides();
        // `$18`: the minute before now. The subqueries only when their figures decide.
        let admit = if decides {
            "UPDATE accounts SET last_active_at = CASE \
             WHEN last_active_at IS NULL OR last_active_at < $18 THEN $9 ELSE last_active_at END \
             WHERE id = $1 AND status = 'active' RETURNING balance, \
             (SELECT COUNT(*) FROM runs WHERE account_id = $1 AND status IN ('queued', 'streaming')) AS running, \
             (SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) FROM runs \
             WHERE account_id = $1 AND status IN ('queued', 'streaming')) AS held; "
        } else {
            "UPDATE accounts SET last_active_at = CASE \
             WHEN last_active_at IS NULL OR last_active_at < $18 THEN $9 ELSE last_active_at END \
             WHERE id = $1 AND status = 'active' RETURNING balance, 0 AS running, 0 AS held; "
        };
        let sql = format!("{admit}{}", self.rows_sql());
        let now = now_ms();
        let mut query = self.bind(sqlx::query(sqlx::AssertSqlSafe(sql)), now);
        if self.conversation.is_none() {
            // `$15`..`$17` unused: SQLite takes them as NULL, but `$18` needs its place.
            query = query
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<i64>);
        }
        // Every row of every statement: fetching less could leave statements unrun.
        let rows = query.bind(now - 60_000).fetch_all(&mut **tx).await?;
        let row = rows.first().ok_or(StoreError::NotFound("account"))?;
        if decides {
            check_admission(
                admission,
                row.try_get("balance")?,
                row.try_get("running")?,
                row.try_get("held")?,
            )?;
        }
        Ok(())
    }

    /// PostgreSQL: the admission as ever (it must lock the account's row before it
    /// counts the account's runs, which one statement's snapshot cannot), then the
    /// rows in one statement.
    async fn apply_postgres(&self, tx: &mut Tx) -> Result<(), StoreError> {
        admit(tx, self.backend, &self.turn.account_id, &self.admission).await?;
        let query = self.bind(sqlx::query(self.rows_sql()), now_ms());
        query.execute(&mut **tx).await?;
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
    /// message, counts it in the console's rollup and charges it (its ledger row,
    /// then the balance only if that row was written: a run is charged once); false,
    /// writing nothing, when it was not ours to end. One query on SQLite; on
    /// PostgreSQL the account's lock, then one statement.
    async fn apply(&self, tx: &mut Tx) -> Result<bool, StoreError> {
        let (id, outcome) = (&self.id, &self.outcome);
        lock_run_account(tx, self.backend, id).await?;
        let now = now_ms();
        let sql = match (self.backend, self.charge.is_some()) {
            (Backend::Sqlite, true) => concat!(finish_sqlite_sql!(), "; ", charge_sqlite_sql!()),
            (Backend::Sqlite, false) => finish_sqlite_sql!(),
            (Backend::Postgres, true) => concat!(
                finish_postgres_sql!(),
                ", l AS (INSERT INTO ledger (id, account_id, amount, reason, run_id, model, prompt_tokens, \
                 completion_tokens, cached_prompt_tokens, note, created_at) \
                 SELECT $22, r.account_id, -$23, 'run_usage', $11, $24, $25, $26, $27, NULL, $10 FROM r \
                 ON CONFLICT (run_id) DO NOTHING RETURNING account_id), \
                 a AS (UPDATE accounts SET balance = balance - $23, spent = spent + $23 \
                 FROM l WHERE accounts.id = l.account_id) \
                 SELECT 'ended' AS what FROM r UNION ALL SELECT 'charged' FROM l"
            ),
            (Backend::Postgres, false) => {
                concat!(finish_postgres_sql!(), " SELECT 'ended' AS what FROM r")
            }
        };
        let (minute, hour) = run_end_buckets(now);
        let cost = self.charge.as_ref().map_or(0, |c| c.amount);
        let query = sqlx::query(sql)
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
            .bind(MINUTE_MS)
            .bind(minute)
            .bind(HOUR_MS)
            .bind(hour)
            .bind(run_shard(id))
            .bind(i64::from(outcome.status == RunStatus::Failed))
            .bind(outcome.prompt_tokens.unwrap_or(0).max(0))
            .bind(outcome.completion_tokens.unwrap_or(0).max(0))
            .bind(cost);
        let query = match &self.charge {
            Some(charge) => query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(charge.amount)
                .bind(&charge.model)
                .bind(charge.tokens.prompt)
                .bind(charge.tokens.completion)
                .bind(charge.tokens.cached_prompt),
            None => query,
        };
        // Every row of every statement: fetching less could leave statements unrun.
        let rows = query.fetch_all(&mut **tx).await?;
        let mut ended = false;
        let mut charged = false;
        for row in &rows {
            match row.try_get::<String, _>("what")?.as_str() {
                "ended" => ended = true,
                _ => charged = true,
            }
        }
        if ended && self.charge.is_some() && !charged {
            tracing::warn!(run = %id, "run was already charged; not charging it twice");
        }
        Ok(ended)
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

/// The most runs one checkpoint statement saves (a power of two: see
/// [`Store::checkpoint_many`]).
pub(crate) const CHECKPOINT_BATCH: usize = 64;

/// Checkpoints `runs` (at most [`CHECKPOINT_BATCH`]) in one statement, as
/// [`checkpoint_on`] does each: a run's row is written only if `owner` still holds
/// its lease, and the statement returns the rows it wrote. The results are in the
/// order of `runs`.
async fn checkpoint_batch(
    tx: &mut Tx,
    owner: &str,
    runs: &[(RunId, Checkpoint)],
    lease_until: i64,
) -> Result<Vec<Option<bool>>, StoreError> {
    use std::fmt::Write as _;
    // `column1`.. are the names both SQLite and PostgreSQL give a VALUES list's columns.
    let mut sql = String::from(
        "UPDATE runs SET status = 'streaming', text = v.column2, checkpoint_seq = v.column3, \
         lease_expires_at = $1, updated_at = $2 FROM (VALUES ",
    );
    for i in 0..runs.len() {
        let p = 4 + 3 * i;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{sep}(${p}, ${}, ${})", p + 1, p + 2);
    }
    sql.push_str(
        ") AS v WHERE runs.id = v.column1 AND runs.lease_owner = $3 \
         AND runs.status IN ('queued', 'streaming') RETURNING runs.id, runs.stop_requested",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(now_ms())
        .bind(owner);
    for (id, cp) in runs {
        query = query.bind(id.as_str()).bind(cp.text.as_str()).bind(cp.seq);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut stops = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        stops.insert(id, row.try_get::<i64, _>("stop_requested")? != 0);
    }
    Ok(runs
        .iter()
        .map(|(id, _)| stops.get(id.as_str()).copied())
        .collect())
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
