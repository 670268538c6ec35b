//! A new turn and a continuation: admitted and written in as few round trips as the
//! backend allows (one query on SQLite).

use super::{Run, TurnIds};
use crate::Tx;
use crate::group_commit::{Apply, shared_write};
use crate::ledger::{Admission, admit, check_admission, touch_last_activity};
use crate::{Backend, NewConversation, NewTurn, Store, StoreConflict, StoreError};
use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use sqlx::Row;

/// A new turn's two messages (`$2` conversation, `$3`/`$4` user/assistant message,
/// `$6` parent, `$7` content, `$8` model, `$9`/`$14` their time, the same); on SQLite only if
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
    (PostgresChecked) => {
        concat!(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) \
             SELECT * FROM (VALUES ",
            turn_messages_sql!(rows),
            ") AS v WHERE EXISTS (SELECT 1 FROM a)"
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
    (PostgresChecked) => {
        concat!(
            turn_run_sql!(columns),
            " SELECT ",
            turn_run_sql!(values),
            " FROM a RETURNING id"
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
    (PostgresChecked) => {
        "c AS (INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
         SELECT $2, $1, $15, $8, $16, $9, $9, $17 FROM a), \
         b AS (INSERT INTO bindings (surface, channel_key, conversation_id, created_at) SELECT 'web', $2, $2, $9 FROM a), "
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

/// On PostgreSQL, the first clause of a new turn's statement when its admission
/// cannot refuse it: account `$1` is active, its row share-locked until the commit
/// (as [`crate::ledger::admit`] locks it), and every row of the turn is written only
/// if it is (`a` has a row).
macro_rules! checked_account_sql {
    () => {
        "WITH a AS (SELECT id FROM accounts WHERE id = $1 AND status = 'active' FOR SHARE), "
    };
}

/// The condition of a new turn's rows on SQLite: account `$1` is active.
macro_rules! active_account_sql {
    () => {
        " WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status = 'active')"
    };
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
        let write = TurnWrite {
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
            touch_activity: self.activity_due(&turn.account_id),
        };
        let ids = write.ids.clone();
        self.write_many(write).await?;
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
        let write = ContinuationWrite {
            id: RunId::generate(),
            previous: previous.clone(),
            model: model.to_string(),
            owner: owner.to_string(),
            lease_until,
            admission: admission.clone(),
            backend: self.backend(),
            touch_activity: self.activity_due(&previous.account_id),
        };
        let id = write.id.clone();
        self.write(shared_write(write)).await?;
        Ok(id)
    }
}

mod rows;
mod set;
mod set_postgres;

/// A new turn to write: what [`Store::start_turn_admitted`] and
/// [`Store::start_conversation_turn`] apply (possibly twice: see `group_commit.rs`),
/// on SQLite together with the new turns queued next to it (`turn/set.rs`).
struct TurnWrite {
    ids: TurnIds,
    turn: NewTurn,
    conversation: Option<NewConversation>,
    owner: String,
    lease_until: i64,
    admission: Admission,
    backend: Backend,
    /// On PostgreSQL, whether this instance is due to write the account's last
    /// activity (`activity.rs`); on SQLite the admission's statement writes it.
    touch_activity: bool,
}

impl Apply for TurnWrite {
    type Output = ();

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
}

impl TurnWrite {
    /// The statement that writes the turn's rows, parameters `$1`..`$17` as
    /// [`TurnWrite::bind`] binds them; on SQLite several statements in one query
    /// (sqlx runs each in turn, binding `$n` by number across them), on PostgreSQL
    /// one statement whose data-modifying `WITH` clauses write together (the
    /// foreign keys between the new rows are checked at the end of the statement).
    fn rows_sql(&self) -> &'static str {
        let checked = self.backend == Backend::Postgres && !self.admission.decides();
        if checked {
            return if self.conversation.is_some() {
                concat!(
                    checked_account_sql!(),
                    turn_conversation_sql!(PostgresChecked),
                    "m AS (",
                    turn_messages_sql!(PostgresChecked),
                    ") ",
                    turn_run_sql!(PostgresChecked),
                )
            } else {
                concat!(
                    checked_account_sql!(),
                    "u AS (UPDATE conversations SET updated_at = $9, model = $8 \
                     WHERE id = $2 AND EXISTS (SELECT 1 FROM a)), ",
                    "m AS (",
                    turn_messages_sql!(PostgresChecked),
                    ") ",
                    turn_run_sql!(PostgresChecked),
                )
            };
        }
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
            // The reply at the question's time, after it by id (UUIDv7, generated
            // after the question's), as in a batch (`rows::rows_of`): a reply a
            // millisecond later sorted after the next turn's question when both
            // turns were written within one millisecond.
            .bind(now);
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

    /// PostgreSQL: an admission that decides on the balance or the active runs as
    /// ever (it must lock the account's row before it counts the account's runs,
    /// which one statement's snapshot cannot), then the rows in one statement. One
    /// that cannot refuse (only an inactive account fails it) is the first clause of
    /// the rows' statement, after the last activity when this instance is due to
    /// write it: one round trip where it took three.
    async fn apply_postgres(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let now = now_ms();
        if self.admission.decides() {
            admit(
                tx,
                self.backend,
                &self.turn.account_id,
                &self.admission,
                self.touch_activity,
            )
            .await?;
            let query = self.bind(sqlx::query(self.rows_sql()), now);
            query.execute(&mut **tx).await?;
            return Ok(());
        }
        if self.touch_activity {
            touch_last_activity(tx, &self.turn.account_id, now).await?;
        }
        let query = self.bind(sqlx::query(self.rows_sql()), now);
        match query.fetch_optional(&mut **tx).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("account")),
        }
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
    /// As [`TurnWrite`]'s.
    touch_activity: bool,
}

impl Apply for ContinuationWrite {
    type Output = ();

    async fn apply(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let previous = &self.previous;
        admit(
            tx,
            self.backend,
            &previous.account_id,
            &self.admission,
            self.touch_activity,
        )
        .await?;
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
