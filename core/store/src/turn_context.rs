//! What a new turn of a conversation is built from (the conversation, its messages
//! with their runs' state, its tool steps), read in one round trip. On PostgreSQL
//! the reads of messages sent at the same moment share one statement
//! (`read_lanes.rs`): a burst's messages each read their conversation first, and one
//! statement per lane's batch replaces a pool connection's turn each.

use crate::conversations::{
    CONVERSATION_COLUMNS, Conversation, MESSAGES_SQL, Message, RUNS_SQL, chain_to,
    messages_with_runs,
};
use crate::read_lanes::ReadMany;
use crate::{Store, StoreError};
use chorus_model::history::ToolStep;
use chorus_model::ids::{AccountId, ConversationId, MessageId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;

/// What a new turn of a conversation is built from ([`Store::turn_context`]).
#[derive(Clone, Debug)]
pub struct TurnContext {
    pub conversation: Conversation,
    /// The tools chosen for the conversation.
    pub tools: Vec<String>,
    /// Every message, oldest first.
    pub messages: Vec<Message>,
    /// The tool steps of each message, merged over its runs.
    pub tool_steps: Vec<(MessageId, Vec<ToolStep>)>,
}

impl TurnContext {
    /// The newest message: where a new turn hangs by default.
    pub fn latest_message(&self) -> Option<&MessageId> {
        self.messages.last().map(|m| &m.id)
    }

    /// Whether `message` belongs to the conversation.
    pub fn has_message(&self, message: &MessageId) -> bool {
        self.messages.iter().any(|m| m.id == *message)
    }

    /// The messages from the root down to `leaf`.
    pub fn branch(&self, leaf: &MessageId) -> Vec<Message> {
        chain_to(&self.messages, leaf)
    }
}

impl Store {
    /// What a new turn of `account`'s conversation `id` is built from, in one round
    /// trip ([`TURN_CONTEXTS_SQL`] on PostgreSQL, shared with the other reads waiting
    /// then; on SQLite [`TURN_CONTEXT_SQLITE`]): the conversation with its tool
    /// selection, its messages (with their runs' state), and its runs' tool steps.
    /// `None`: `account` owns no such conversation.
    pub async fn turn_context(
        &self,
        account: &AccountId,
        id: &ConversationId,
    ) -> Result<Option<TurnContext>, StoreError> {
        if let Some(lanes) = &self.turn_contexts {
            let key = TurnContextKey {
                conversation: id.clone(),
                account: account.clone(),
            };
            return lanes.read(key).await;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(TURN_CONTEXT_SQLITE.as_str()))
            .bind(id.as_str())
            .bind(account.as_str())
            .fetch_all(self.pool())
            .await?;
        let mut parts = TurnContextRows::default();
        for row in rows {
            parts.push(row)?;
        }
        parts.context()
    }
}

/// Which turn context a caller reads: a conversation, if this account owns it.
pub(crate) struct TurnContextKey {
    conversation: ConversationId,
    account: AccountId,
}

/// A key as [`TURN_CONTEXTS_SQL`] reads it.
#[derive(Serialize, PartialEq, Eq, Hash)]
struct KeyRow<'a> {
    conversation: &'a str,
    account: &'a str,
}

/// PostgreSQL's turn-context reads, batched by [`crate::read_lanes::ReadLanes`].
pub(crate) struct TurnContextReads;

impl ReadMany for TurnContextReads {
    type Key = TurnContextKey;
    type Value = Option<TurnContext>;

    async fn read_many(
        pool: &AnyPool,
        keys: &[&TurnContextKey],
    ) -> Result<Vec<Option<TurnContext>>, StoreError> {
        // Each pair once (two sends to one conversation ask for it twice); a
        // conversation asked for by its owner and by a guess at someone else's is
        // read once, for the pair that owns it.
        let rows: Vec<KeyRow> = keys
            .iter()
            .map(|key| KeyRow {
                conversation: key.conversation.as_str(),
                account: key.account.as_str(),
            })
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|e| StoreError::Corrupt(format!("turn context keys as JSON: {e}")))?;
        let mut by_conversation: HashMap<String, TurnContextRows> = HashMap::new();
        for row in sqlx::query(TURN_CONTEXTS_SQL)
            .bind(json)
            .fetch_all(pool)
            .await?
        {
            let key: String = row.try_get("key")?;
            by_conversation.entry(key).or_default().push(row)?;
        }
        let mut contexts: HashMap<String, TurnContext> = HashMap::new();
        for (conversation, parts) in by_conversation {
            if let Some(context) = parts.context()? {
                contexts.insert(conversation, context);
            }
        }
        // A conversation's context answers only the account that owns it; the last
        // key asking for it takes it, the others a copy.
        let mut asked: HashMap<&str, usize> = HashMap::new();
        for key in keys {
            *asked.entry(key.conversation.as_str()).or_default() += 1;
        }
        Ok(keys
            .iter()
            .map(|key| {
                let id = key.conversation.as_str();
                let left = asked.get_mut(id).map(|n| {
                    *n -= 1;
                    *n
                });
                let context = match left {
                    Some(0) => contexts.remove(id),
                    _ => contexts.get(id).cloned(),
                };
                context.filter(|context| context.conversation.account_id == key.account)
            })
            .collect())
    }

    async fn read_one(
        pool: &AnyPool,
        key: &TurnContextKey,
    ) -> Result<Option<TurnContext>, StoreError> {
        Ok(Self::read_many(pool, &[key]).await?.pop().flatten())
    }
}

/// A turn context's rows, by part.
#[derive(Default)]
struct TurnContextRows {
    conversation: Vec<AnyRow>,
    messages: Vec<AnyRow>,
    runs: Vec<AnyRow>,
}

impl TurnContextRows {
    /// Files a row under the part it says it is.
    fn push(&mut self, row: AnyRow) -> Result<(), StoreError> {
        let part: String = row.try_get("part")?;
        match part.as_str() {
            "conversation" => self.conversation.push(row),
            "message" => self.messages.push(row),
            "run" => self.runs.push(row),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a turn context row of part {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// The context these rows make; `None` without the conversation's row.
    fn context(mut self) -> Result<Option<TurnContext>, StoreError> {
        let Some(row) = self.conversation.pop() else {
            return Ok(None);
        };
        let conversation = Conversation::from_row(&row)?;
        let tools: Option<String> = row.try_get("tools")?;
        Ok(Some(TurnContext {
            conversation,
            tools: crate::tool_steps::parse_selection(tools),
            messages: messages_with_runs(&self.messages, &self.runs)?,
            tool_steps: crate::tool_steps::steps_by_message(&self.runs)?,
        }))
    }
}

/// On SQLite, the three parts of a turn context (`$1` the conversation, `$2` its
/// account) as three statements of one query (sqlx runs each in turn, binding `$n`
/// by number across them): one round trip to the connection's worker thread, without
/// a union's sorts and wide rows, which made the read measurably slower there in a
/// burst (README.md, "Admissions together"). Each row says its `part`.
static TURN_CONTEXT_SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let marked =
        |part: &str, sql: &str| sql.replacen("SELECT ", &format!("SELECT '{part}' AS part, "), 1);
    format!(
        "SELECT 'conversation' AS part, {CONVERSATION_COLUMNS}, tools FROM conversations \
         WHERE id = $1 AND account_id = $2; {}; {}",
        marked("message", MESSAGES_SQL),
        marked("run", RUNS_SQL)
    )
});

/// The turn contexts of `$1`, a JSON array of `{conversation, account}`, on
/// PostgreSQL, in one statement: each conversation's row that its account owns (as
/// `SELECT CONVERSATION_COLUMNS, tools`), its messages' (as [`MESSAGES_SQL`]) and
/// its runs' (as [`RUNS_SQL`]). Each row says its `part`, the columns of the other
/// parts NULL, and its conversation (`key`); oldest first (the parts are sorted
/// apart in Rust). The messages and runs of a conversation no key's account owns are
/// not read.
const TURN_CONTEXTS_SQL: &str = "\
    WITH c AS (SELECT id, account_id, title, model, system_prompt, created_at, updated_at, tools \
    FROM conversations WHERE (id, account_id) IN \
    (SELECT conversation, account FROM json_to_recordset($1::json) AS k(conversation text, account text))) \
    SELECT 'conversation' AS part, id AS key, id, account_id, title, model, system_prompt, created_at, \
    updated_at, tools, CAST(NULL AS TEXT) AS parent_id, CAST(NULL AS TEXT) AS role, \
    CAST(NULL AS TEXT) AS content, CAST(NULL AS TEXT) AS message_id, CAST(NULL AS TEXT) AS status, \
    CAST(NULL AS TEXT) AS text, CAST(NULL AS TEXT) AS finish_reason, CAST(NULL AS TEXT) AS error, \
    CAST(NULL AS BIGINT) AS prompt_tokens, CAST(NULL AS BIGINT) AS completion_tokens, \
    CAST(NULL AS BIGINT) AS prefix_len, CAST(NULL AS TEXT) AS tool_steps \
    FROM c \
    UNION ALL \
    SELECT 'message', conversation_id, id, NULL, NULL, model, NULL, created_at, NULL, NULL, \
    parent_id, role, content, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
    FROM messages WHERE conversation_id IN (SELECT id FROM c) \
    UNION ALL \
    SELECT 'run', conversation_id, id, NULL, NULL, NULL, NULL, created_at, NULL, NULL, NULL, NULL, \
    NULL, message_id, status, text, finish_reason, error, prompt_tokens, completion_tokens, \
    prefix_len, tool_steps \
    FROM runs WHERE conversation_id IN (SELECT id FROM c) \
    ORDER BY created_at, id";
