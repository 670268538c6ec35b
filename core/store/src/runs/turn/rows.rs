//! A batch of new turns as the set-based statements read it (`set.rs` on SQLite,
//! `set_postgres.rs` on PostgreSQL): one JSON array of rows, and one of the existing
//! conversations' updates.

use super::TurnWrite;
use crate::StoreError;
use serde::Serialize;
use std::collections::HashSet;

/// One admitted turn's values, as the batch's statement reads them.
#[derive(Serialize)]
pub(super) struct TurnRow<'a> {
    account: &'a str,
    conversation: &'a str,
    /// 1 when the turn creates its conversation.
    new: u8,
    title: Option<&'a str>,
    system_prompt: Option<&'a str>,
    expires_at: Option<i64>,
    user_message: &'a str,
    assistant_message: &'a str,
    run: &'a str,
    parent: Option<&'a str>,
    content: &'a str,
    model: &'a str,
    owner: &'a str,
    lease_until: i64,
    prompt_estimate: i64,
    reserved: i64,
}

impl<'a> TurnRow<'a> {
    fn of(write: &'a TurnWrite) -> Self {
        let (turn, ids, conversation) = (&write.turn, &write.ids, write.conversation.as_ref());
        Self {
            account: turn.account_id.as_str(),
            conversation: turn.conversation_id.as_str(),
            new: u8::from(conversation.is_some()),
            title: conversation.map(|c| c.title.as_str()),
            system_prompt: conversation.and_then(|c| c.system_prompt.as_deref()),
            expires_at: conversation.and_then(|c| c.expires_at),
            user_message: ids.user_message_id.as_str(),
            assistant_message: ids.assistant_message_id.as_str(),
            run: ids.run_id.as_str(),
            parent: turn.parent_id.as_ref().map(|p| p.as_str()),
            content: &turn.content,
            model: &turn.model,
            owner: &write.owner,
            lease_until: write.lease_until,
            prompt_estimate: write.admission.prompt_estimate,
            reserved: write.admission.reservation,
        }
    }
}

/// An existing conversation's new time and model: the last turn of the batch on it.
#[derive(Serialize)]
pub(super) struct ConversationUpdate<'a> {
    account: &'a str,
    conversation: &'a str,
    model: &'a str,
}

/// The rows of the `admitted` turns, and the existing conversations' updates.
///
/// Every message of a batch is written at the same moment. Messages are listed by
/// time, then id, and ids are UUIDv7 generated in order by this process (each turn's
/// question before its reply, a turn's ids before it is queued): so turns on one
/// conversation keep their queue order, the reply after its question, and a later
/// batch's turns come after them. (Spacing them a few milliseconds apart put a
/// batch's later turns in the future, before the next batch's.)
pub(super) fn rows_of<'w>(
    admitted: &[&'w TurnWrite],
) -> (Vec<TurnRow<'w>>, Vec<ConversationUpdate<'w>>) {
    let rows: Vec<TurnRow> = admitted.iter().map(|w| TurnRow::of(w)).collect();
    // The last turn on each existing conversation sets its model.
    let mut updated = HashSet::new();
    let updates: Vec<ConversationUpdate> = admitted
        .iter()
        .rev()
        .filter(|w| w.conversation.is_none() && updated.insert(w.turn.conversation_id.as_str()))
        .map(|w| ConversationUpdate {
            account: w.turn.account_id.as_str(),
            conversation: w.turn.conversation_id.as_str(),
            model: &w.turn.model,
        })
        .collect();
    (rows, updates)
}

/// The accounts of the `writes` that `keep` keeps, in byte order, each once (the
/// order a batch locks them in on PostgreSQL).
pub(super) fn accounts_of<'w>(
    writes: &[&'w TurnWrite],
    keep: impl Fn(&TurnWrite) -> bool,
) -> Vec<&'w str> {
    let mut accounts: Vec<&str> = writes
        .iter()
        .filter(|w| keep(w))
        .map(|w| w.turn.account_id.as_str())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
