//! New turns applied together on PostgreSQL: a lane's batch (`group_commit.rs`) of
//! turns whose admission cannot refuse them costs two statements, where each turn
//! cost a transaction of its own on the shared pool, which is what a burst's turns
//! waited for.
//!
//! The first statement locks the batch's active accounts in id order, the order
//! merges lock two accounts in, so a batch cannot deadlock with a merge or with
//! another batch: `FOR SHARE` (a suspension, a merge or a charge waits for the
//! commit, turns of the same accounts on other lanes do not), or `FOR NO KEY UPDATE`
//! when the batch writes an account's last activity, which a shared lock could not
//! be upgraded to without risking a deadlock with another batch holding it too. A
//! turn whose account is not among the locked rows is answered `NotFound`, as alone,
//! and written nowhere. The second statement writes every row of the others from one
//! JSON parameter (`json_to_recordset`): its text is the same for every batch, so
//! it is prepared once per connection.

use super::TurnWrite;
use super::rows::{accounts_of, rows_of, to_json};
use crate::{StoreError, Tx};
use chorus_model::time::now_ms;
use sqlx::Row;
use std::collections::HashSet;

/// The active accounts among `$1` (a JSON array of ids), share-locked in id order:
/// byte order (`COLLATE "C"`), the order merges compare ids in.
const LOCK_SHARED_SQL: &str = "SELECT id FROM accounts \
    WHERE id IN (SELECT json_array_elements_text($1::json)) AND status = 'active' \
    ORDER BY id COLLATE \"C\" FOR SHARE";

/// [`LOCK_SHARED_SQL`], locked to be written (the batch writes a last activity).
const LOCK_WRITTEN_SQL: &str = "SELECT id FROM accounts \
    WHERE id IN (SELECT json_array_elements_text($1::json)) AND status = 'active' \
    ORDER BY id COLLATE \"C\" FOR NO KEY UPDATE";

/// Every row of the turns `$1` (a JSON array of `TurnRow`, their accounts locked and
/// active) at time `$2` (in order: `rows::rows_of`): the last activity of the
/// accounts `$3` (to the minute: `$4` is the minute before), the new conversations
/// and their web bindings, both messages of each turn, the queued runs, and the
/// existing conversations' time and model (`$5`, one entry each). The foreign keys
/// between the new rows are checked at the statement's end.
const ROWS_SQL: &str = "WITH t AS (SELECT * FROM json_to_recordset($1::json) AS t(\
    account text, conversation text, \"new\" int, title text, system_prompt text, expires_at bigint, \
    user_message text, assistant_message text, run text, parent text, content text, \
    model text, owner text, lease_until bigint, prompt_estimate bigint, reserved bigint)), \
    l AS (UPDATE accounts SET last_active_at = $2 \
    WHERE id IN (SELECT json_array_elements_text($3::json)) \
    AND (last_active_at IS NULL OR last_active_at < $4)), \
    c AS (INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
    SELECT conversation, account, title, model, system_prompt, $2, $2, expires_at FROM t WHERE \"new\" = 1), \
    b AS (INSERT INTO bindings (surface, channel_key, conversation_id, created_at) \
    SELECT 'web', conversation, conversation, $2 FROM t WHERE \"new\" = 1), \
    m AS (INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) \
    SELECT user_message, conversation, parent, 'user', content, NULL, $2 FROM t \
    UNION ALL SELECT assistant_message, conversation, user_message, 'assistant', '', model, $2 FROM t), \
    u AS (UPDATE conversations SET updated_at = $2, model = x.model \
    FROM json_to_recordset($5::json) AS x(conversation text, model text) \
    WHERE conversations.id = x.conversation) \
    INSERT INTO runs (id, account_id, conversation_id, message_id, continues_run_id, model, status, text, \
    prefix_len, checkpoint_seq, stop_requested, lease_owner, lease_expires_at, created_at, updated_at, \
    prompt_estimate, reserved) \
    SELECT run, account, conversation, assistant_message, NULL, model, 'queued', '', 0, 0, 0, owner, \
    lease_until, $2, $2, prompt_estimate, reserved FROM t";

/// Applies `writes` (each combinable: its admission cannot refuse it) in `tx`: each
/// one's answer, `NotFound("account")` for a turn of an inactive or unknown account.
pub(super) async fn apply_many(
    writes: &[&TurnWrite],
    tx: &mut Tx,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    if writes.iter().any(|w| w.admission.decides()) {
        // Not combinable: the group commit applies the batch again, each alone.
        return Err(StoreError::Corrupt(
            "an admission that decides was batched on PostgreSQL".into(),
        ));
    }
    let accounts = accounts_of(writes, |_| true);
    let mut touched = accounts_of(writes, |w| w.touch_activity);
    let lock = if touched.is_empty() {
        LOCK_SHARED_SQL
    } else {
        LOCK_WRITTEN_SQL
    };
    let active: HashSet<String> = sqlx::query(lock)
        .bind(to_json(&accounts)?)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
    let admitted: Vec<&TurnWrite> = writes
        .iter()
        .copied()
        .filter(|w| active.contains(w.turn.account_id.as_str()))
        .collect();
    if !admitted.is_empty() {
        // Only rows this transaction has locked are written.
        touched.retain(|account| active.contains(*account));
        let now = now_ms();
        let (rows, updates) = rows_of(&admitted);
        sqlx::query(ROWS_SQL)
            .bind(to_json(&rows)?)
            .bind(now)
            .bind(to_json(&touched)?)
            .bind(now - crate::activity::ACTIVITY_RESOLUTION_MS)
            .bind(to_json(&updates)?)
            .execute(&mut **tx)
            .await?;
    }
    Ok(writes
        .iter()
        .map(|w| {
            if active.contains(w.turn.account_id.as_str()) {
                Ok(())
            } else {
                Err(StoreError::NotFound("account"))
            }
        })
        .collect())
}
