//! New turns applied together on SQLite: however many a group commit's batch holds,
//! they cost one query writing every row (and, when an admission decides on the
//! balance or the active runs, one read of their accounts before it) where each cost
//! a query of its own, a round trip to the writer connection's worker thread that, in
//! a burst on a busy machine, waits for a CPU turn every time.
//!
//! The statements write a turn's rows only if its account is active, and return the
//! runs they wrote: a turn whose run is not among them is refused as an inactive or
//! unknown account's. Admissions that decide are decided here, in queue order, on
//! what the read returned: each admitted run counts for the next admission of its
//! account (one more active run, its reservation held), exactly as when each turn's
//! statement saw the rows of the ones before it in the same transaction. A refused
//! turn is left out of the write, so it writes nothing. The rows go in as one JSON
//! array parameter read by `json_each`, so the statements' text is the same for
//! every batch and is prepared once per connection. (A PostgreSQL lane's batch is
//! handed to `set_postgres.rs`.)

use super::TurnWrite;
use super::rows::{accounts_of, rows_of, to_json};
use crate::group_commit::ApplyMany;
use crate::ledger::check_admission;
use crate::{Backend, StoreError, Tx};
use chorus_model::time::now_ms;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Each active account of `$1` (a JSON array of ids) with what decides its
/// admissions: its balance, and its active runs' number and reservations. An
/// inactive or unknown account has no row.
const ACCOUNTS_SQL: &str = "SELECT a.id, a.balance, \
    (SELECT COUNT(*) FROM runs WHERE account_id = a.id AND status IN ('queued', 'streaming')) AS running, \
    (SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) FROM runs \
    WHERE account_id = a.id AND status IN ('queued', 'streaming')) AS held \
    FROM accounts a WHERE a.id IN (SELECT value FROM json_each($1)) AND a.status = 'active'";

/// [`ACCOUNTS_SQL`] when no admission of the batch decides on those figures.
const ACTIVE_ACCOUNTS_SQL: &str = "SELECT a.id, a.balance, 0 AS running, 0 AS held \
    FROM accounts a WHERE a.id IN (SELECT value FROM json_each($1)) AND a.status = 'active'";

/// The condition of a turn's rows: its account (`t`'s) is active.
macro_rules! active_account {
    ($t:literal) => {
        concat!(
            " EXISTS (SELECT 1 FROM accounts a WHERE a.id = ",
            $t,
            ".value ->> 'account' AND a.status = 'active')"
        )
    };
}

/// Every row of the turns `$1` (a JSON array of `rows::TurnRow`) whose account is
/// active, at time `$2` (see `rows::rows_of` for their order): their accounts' last
/// activity (to the minute: `$3` is the minute before), the new conversations and
/// their web bindings, both messages of each turn, the queued runs (returning their
/// ids: a turn whose run is not among them was not written), and the existing
/// conversations' time and model (`$4`, one entry each).
const ROWS_SQL: &str = concat!(
    "UPDATE accounts SET last_active_at = $2 \
     WHERE status = 'active' AND id IN (SELECT t.value ->> 'account' FROM json_each($1) AS t) \
     AND (last_active_at IS NULL OR last_active_at < $3); \
     INSERT INTO conversations (id, account_id, title, model, system_prompt, created_at, updated_at, expires_at) \
     SELECT t.value ->> 'conversation', t.value ->> 'account', t.value ->> 'title', t.value ->> 'model', \
     t.value ->> 'system_prompt', $2, $2, t.value ->> 'expires_at' \
     FROM json_each($1) AS t WHERE t.value ->> 'new' = 1 AND",
    active_account!("t"),
    "; INSERT INTO bindings (surface, channel_key, conversation_id, created_at) \
     SELECT 'web', t.value ->> 'conversation', t.value ->> 'conversation', $2 \
     FROM json_each($1) AS t WHERE t.value ->> 'new' = 1 AND",
    active_account!("t"),
    "; INSERT INTO messages (id, conversation_id, parent_id, role, content, model, created_at) \
     SELECT t.value ->> 'user_message', t.value ->> 'conversation', t.value ->> 'parent', 'user', \
     t.value ->> 'content', NULL, $2 FROM json_each($1) AS t WHERE",
    active_account!("t"),
    " UNION ALL \
     SELECT t.value ->> 'assistant_message', t.value ->> 'conversation', t.value ->> 'user_message', \
     'assistant', '', t.value ->> 'model', $2 FROM json_each($1) AS t WHERE",
    active_account!("t"),
    "; INSERT INTO runs (id, account_id, conversation_id, message_id, continues_run_id, model, status, text, \
     prefix_len, checkpoint_seq, stop_requested, lease_owner, lease_expires_at, created_at, updated_at, \
     prompt_estimate, reserved) \
     SELECT t.value ->> 'run', t.value ->> 'account', t.value ->> 'conversation', \
     t.value ->> 'assistant_message', NULL, t.value ->> 'model', 'queued', '', 0, 0, 0, t.value ->> 'owner', \
     t.value ->> 'lease_until', $2, $2, t.value ->> 'prompt_estimate', t.value ->> 'reserved' \
     FROM json_each($1) AS t WHERE",
    active_account!("t"),
    " RETURNING id; \
     UPDATE conversations SET updated_at = $2, model = u.value ->> 'model' \
     FROM json_each($4) AS u WHERE conversations.id = u.value ->> 'conversation' AND",
    active_account!("u"),
);

/// What the admissions of one account decide on, as the batch goes.
struct Standing {
    balance: i64,
    running: i64,
    held: i64,
}

impl ApplyMany for TurnWrite {
    async fn apply_many(
        writes: &[&Self],
        tx: &mut Tx,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if writes
            .first()
            .is_some_and(|w| w.backend == Backend::Postgres)
        {
            return super::set_postgres::apply_many(writes, tx).await;
        }
        // Only an inactive account can refuse a turn whose admission does not decide,
        // and the rows' statements check that themselves: then no read first.
        let (mut answers, admitted) = if writes.iter().any(|w| w.admission.decides()) {
            decide(writes, tx).await?
        } else {
            (writes.iter().map(|_| Ok(())).collect(), writes.to_vec())
        };
        if admitted.is_empty() {
            return Ok(answers);
        }
        let written = write_rows(&admitted, tx).await?;
        for (answer, write) in answers.iter_mut().zip(writes) {
            if answer.is_ok() && !written.contains(write.ids.run_id.as_str()) {
                *answer = Err(StoreError::NotFound("account"));
            }
        }
        Ok(answers)
    }

    /// Not with a NUL character in any text: JSON carries it as `\u0000`, which
    /// SQLite's JSON functions do not give back whole (and PostgreSQL's text cannot
    /// hold, so such a turn fails alone). On PostgreSQL only when the admission cannot
    /// refuse the turn: one that decides on the balance or the active runs locks its
    /// account's row and counts them in a transaction of its own.
    fn combinable(&self) -> bool {
        let texts = [
            Some(self.turn.content.as_str()),
            Some(self.turn.model.as_str()),
            self.conversation.as_ref().map(|c| c.title.as_str()),
            self.conversation
                .as_ref()
                .and_then(|c| c.system_prompt.as_deref()),
        ];
        let batched = match self.backend {
            Backend::Sqlite => true,
            Backend::Postgres => !self.admission.decides(),
        };
        batched && !texts.into_iter().flatten().any(|t| t.contains('\0'))
    }
}

/// Decides the admissions of `writes` in order on their accounts' standing, read
/// once: each one's answer, and the admitted writes.
async fn decide<'w>(writes: &[&'w TurnWrite], tx: &mut Tx) -> Result<TurnAnswers<'w>, StoreError> {
    let mut standing = read_standing(writes, tx).await?;
    let mut answers = Vec::with_capacity(writes.len());
    let mut admitted = Vec::with_capacity(writes.len());
    for &write in writes {
        let answer = match standing.get_mut(write.turn.account_id.as_str()) {
            None => Err(StoreError::NotFound("account")),
            Some(account) => admit(write, account),
        };
        if answer.is_ok() {
            admitted.push(write);
        }
        answers.push(answer);
    }
    Ok((answers, admitted))
}

/// Each write's answer, and the writes admitted.
type TurnAnswers<'w> = (Vec<Result<(), StoreError>>, Vec<&'w TurnWrite>);

/// The standing of every active account of `writes`, read once.
async fn read_standing(
    writes: &[&TurnWrite],
    tx: &mut Tx,
) -> Result<HashMap<String, Standing>, StoreError> {
    let accounts = accounts_of(writes, |_| true);
    let sql = if writes.iter().any(|w| w.admission.decides()) {
        ACCOUNTS_SQL
    } else {
        ACTIVE_ACCOUNTS_SQL
    };
    let rows = sqlx::query(sql)
        .bind(to_json(&accounts)?)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                Standing {
                    balance: row.try_get("balance")?,
                    running: row.try_get("running")?,
                    held: row.try_get("held")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Decides `write`'s admission on its account's standing; an admitted run counts for
/// the account's next admission.
fn admit(write: &TurnWrite, account: &mut Standing) -> Result<(), StoreError> {
    let admission = &write.admission;
    if admission.decides() {
        check_admission(admission, account.balance, account.running, account.held)?;
    }
    account.running += 1;
    account.held += admission.reservation;
    Ok(())
}

/// Writes every row of the `admitted` turns whose account is active, in one query;
/// returns the ids of the runs written.
async fn write_rows(admitted: &[&TurnWrite], tx: &mut Tx) -> Result<HashSet<String>, StoreError> {
    let now = now_ms();
    let (rows, updates) = rows_of(admitted);
    // Every row of every statement (fetching less could leave statements unrun); only
    // the runs' statement returns rows.
    let written = sqlx::query(ROWS_SQL)
        .bind(to_json(&rows)?)
        .bind(now)
        .bind(now - 60_000)
        .bind(to_json(&updates)?)
        .fetch_all(&mut **tx)
        .await?;
    written
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}
