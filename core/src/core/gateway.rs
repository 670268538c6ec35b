//! What [`Core`] offers the OpenAI- and Anthropic-compatible gateway: a request that
//! carries its whole history and its own tools becomes a run of the key's account,
//! admitted and charged like any other (rate limit, balance, concurrency, price
//! table), kept as a conversation of its owner (listed in the web client, or hidden
//! and deleted after a retention period: [`GatewayKeep`]), and readable from the
//! journal like every run. The client runs its own tools: a generation that asks
//! for tools ends the run with the calls in the journal.

use super::{Core, CoreError, InvalidInput};
use crate::engine::{EarlyStream, RunJob};
use crate::journal::EntryStream;
use crate::telemetry::timing;
use crate::tools::ToolCallContext;
use chorus_model::chat::{ChatMessage, ChatRole, ToolSpec};
use chorus_model::ids::{AccountId, ConversationId, RunId};
use chorus_model::time::now_ms;
use chorus_providers::{ChatRequest, ToolChoice};
use chorus_store::{Account, Admission, NewConversation, NewTurn};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// One gateway request, already translated from its wire format: the model asked
/// for, the whole history (system messages included), the client's tools and the
/// sampling parameters Chorus passes on.
#[derive(Clone, Debug, Default)]
pub struct GatewayRequest {
    /// A Chorus model (`provider/model`) or alias, as `GET /v1/models` lists them.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// Tools the client offers (and runs itself).
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// `low`, `medium` or `high`.
    pub reasoning_effort: Option<String>,
    /// OpenAI's `seed`: refused unless every model of the chain speaks Chat Completions.
    pub seed: Option<i64>,
    /// OpenAI's `response_format` (not `text`): refused like `seed`.
    pub response_format: Option<serde_json::Value>,
    /// The client did not ask to stream: it reads the reply only once complete, so
    /// the provider may be asked for it whole ([`ChatRequest::whole_reply`]).
    pub whole_reply: bool,
}

/// How a gateway request and its reply are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKeep {
    /// As a conversation of its owner, listed in the web client like any other.
    Conversations,
    /// As a run readable by its owner (`/api/runs/{id}`, usage, ledger) but left out
    /// of conversation lists, deleted with its conversation once `retention` has
    /// passed (by the engine's sweeper). Its charges stay in the ledger.
    Runs { retention: std::time::Duration },
}

/// How the gateway starts its runs (`[gateway]` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayRunOptions {
    pub keep: GatewayKeep,
    /// Send the provider call while the admission is written, when the account is in
    /// good standing ([`Core::start_gateway_run`]), so that the write does not add to
    /// the reply's latency.
    pub early_upstream: bool,
}

/// The run a gateway request started. Only [`Core::start_gateway_run`] makes one
/// (`non_exhaustive`): it vouches that the run is the account's and was just admitted
/// ([`Core::follow_gateway_run`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GatewayRun {
    pub run_id: RunId,
    /// The conversation that keeps the request and its reply.
    pub conversation_id: ConversationId,
}

/// The most characters of a gateway conversation's title (its last message's start).
const TITLE_CHARS: usize = 60;

impl Core {
    /// Starts the run of a gateway request for `account`. Fails before anything is
    /// written when the model is unknown or the history is unusable; admission
    /// (rate limit, balance, concurrency) fails as for any run. Its span is the root
    /// of the reply's trace.
    ///
    /// With `early_upstream`, the provider call goes out while the admission is
    /// written, when the admission cannot refuse (no balance or concurrency limit to
    /// check), or when the balance just read covers the run's reservation and this
    /// instance refused none of the account's requests in the last
    /// [`RecentRefusals::FOR`]. Nothing of it is read before the run is admitted; a
    /// refused admission cancels it. So the write overlaps the model's time to first
    /// token, and an account that is out of credits never reaches the provider twice
    /// in a row.
    #[tracing::instrument(name = "chorus.reply", skip_all, fields(surface = "gateway", chorus.kind = "gateway"))]
    pub async fn start_gateway_run(
        &self,
        account: &Account,
        request: GatewayRequest,
        options: GatewayRunOptions,
    ) -> Result<GatewayRun, CoreError> {
        self.check_model_for(account, &request.model).await?;
        timing::mark("model_check");
        let extras = [
            ("seed", request.seed.is_some()),
            ("response_format", request.response_format.is_some()),
        ];
        if let Some((param, _)) = extras.iter().find(|(_, asked)| *asked) {
            let chain = self.providers.resolve_chain(&request.model)?;
            if let Some(target) = chain.iter().find(|t| !t.kind.takes_openai_extras()) {
                return Err(InvalidInput::UnsupportedParameter {
                    param,
                    model: target.model_ref.clone(),
                    kind: format!("{:?}", target.kind).to_lowercase(),
                }
                .into());
            }
        }
        let last = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role != ChatRole::System)
            .ok_or(InvalidInput::EmptyMessage)?;
        // The stored turn shows what this request added: its last message (a
        // question, or the results of the client's tools).
        let content = storable(if last.role == ChatRole::Tool {
            format!(
                "(tool result for {})\n{}",
                last.tool_call_id.as_deref().unwrap_or("a call"),
                last.content
            )
        } else {
            last.content.clone()
        });
        if content.trim().is_empty() && last.tool_calls.is_empty() {
            return Err(InvalidInput::EmptyMessage.into());
        }
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == ChatRole::System)
            .map(|m| m.content.as_str())
            .collect();
        let system = (!system.is_empty()).then(|| storable(system.join("\n\n")));
        let title = gateway_title(&content);
        let model = request.model.clone();
        let chat = ChatRequest {
            model: model
                .split_once('/')
                .map_or(model.as_str(), |(_, m)| m)
                .to_string(),
            messages: request.messages,
            temperature: request.temperature,
            top_p: request.top_p,
            max_output_tokens: request.max_output_tokens,
            stop: request.stop,
            reasoning_effort: request.reasoning_effort,
            prefill: None,
            tools: request.tools,
            tool_choice: request.tool_choice,
            seed: request.seed,
            response_format: request.response_format,
            whole_reply: request.whole_reply,
        };
        let (admission, balance_seen) = self
            .admission_seen(account, &model, &chat)
            .instrument(tracing::info_span!("chorus.admission", chorus.model_ref = %model))
            .await?;
        timing::mark("admission");
        let early = (options.early_upstream
            && self.may_call_early(account, &admission, balance_seen))
        .then(|| self.providers.resolve_chain(&model).ok())
        .flatten()
        .and_then(|chain| chain.into_iter().next())
        .map(|first| EarlyStream::open(&first, chat.clone()));
        let expires_at = match options.keep {
            GatewayKeep::Conversations => None,
            GatewayKeep::Runs { retention } => {
                Some(now_ms().saturating_add(retention.as_millis().min(i64::MAX as u128) as i64))
            }
        };
        // The conversation, the turn and the run in the one transaction that admits
        // the run: a refused request (balance, concurrency) leaves nothing behind.
        let conversation = NewConversation {
            title,
            system_prompt: system,
            expires_at,
        };
        let turn = NewTurn {
            account_id: account.id.clone(),
            conversation_id: ConversationId::generate(),
            parent_id: None,
            content,
            model: model.clone(),
        };
        let settings = self.engine.settings();
        let lease_until = now_ms() + settings.lease_ttl.as_millis() as i64;
        let written = self
            .store
            .start_conversation_turn(
                &conversation,
                &turn,
                &settings.owner,
                lease_until,
                &admission,
            )
            .await;
        let ids = match written {
            Ok(ids) => ids,
            Err(e) => {
                if early.is_some() {
                    tracing::info!(account = %account.id, error = %e, "gateway: admission refused; its early provider call is cancelled");
                }
                // Whatever refused it (balance, concurrency, the database), the
                // account's next requests wait for their admission.
                self.gateway_refusals.note(&account.id);
                return Err(e.into());
            }
        };
        timing::mark("turn_write");
        let conversation_id = turn.conversation_id;
        self.engine.spawn(RunJob {
            run_id: ids.run_id.clone(),
            tool_context: ToolCallContext {
                account_id: account.id.clone(),
                conversation_id: conversation_id.clone(),
                run_id: Some(ids.run_id.clone()),
            },
            message_id: ids.assistant_message_id.to_string(),
            model_ref: model,
            request: chat,
            prefix: String::new(),
            pending_calls: Vec::new(),
            client_tools: true,
            surface: "gateway",
            early,
            finish_first: true,
        });
        timing::mark("spawn");
        Ok(GatewayRun {
            run_id: ids.run_id,
            conversation_id,
        })
    }

    /// Whether a gateway request's provider call may go out before its admission is
    /// written (see [`Core::start_gateway_run`]).
    fn may_call_early(
        &self,
        account: &Account,
        admission: &Admission,
        balance_seen: Option<i64>,
    ) -> bool {
        if !admission.decides() {
            return true;
        }
        let covered = !(admission.enforce_balance && admission.reservation != 0)
            || balance_seen.is_some_and(|balance| balance >= admission.reservation);
        covered && !self.gateway_refusals.recent(&account.id)
    }

    /// The events of a run [`Core::start_gateway_run`] just started, from its first:
    /// no store read (the run is the account's and was active when admitted), and no
    /// journal check, since every event of a run this new is still to come or held.
    pub fn follow_gateway_run(&self, run: &GatewayRun) -> EntryStream {
        self.journal.follow(&run.run_id, 0)
    }
}

/// The accounts whose gateway requests this instance refused lately: their next
/// requests call the provider only once admitted, so that an account out of credits
/// (or at its concurrency limit) does not make the deployment pay for calls it then
/// cancels.
#[derive(Debug, Default)]
pub(crate) struct RecentRefusals {
    at: Mutex<HashMap<AccountId, Instant>>,
}

impl RecentRefusals {
    /// How long a refusal keeps an account's calls waiting for their admission.
    pub(crate) const FOR: Duration = Duration::from_secs(60);
    /// Entries kept before the expired ones are dropped.
    const PRUNE_ABOVE: usize = 1024;

    fn note(&self, account: &AccountId) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        if at.len() >= Self::PRUNE_ABOVE {
            at.retain(|_, when| when.elapsed() < Self::FOR);
        }
        at.insert(account.clone(), Instant::now());
    }

    fn recent(&self, account: &AccountId) -> bool {
        let at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.get(account)
            .is_some_and(|when| when.elapsed() < Self::FOR)
    }
}

/// `text` as the run's conversation keeps it: a NUL character (U+0000), which an API
/// client may send and PostgreSQL cannot store, is kept as U+FFFD. The provider is
/// sent the request's own text.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// `API: ` and the start of the request's last message, on one line.
fn gateway_title(content: &str) -> String {
    let line: String = content
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(TITLE_CHARS)
        .collect();
    if line.is_empty() {
        "API request".to_string()
    } else {
        format!("API: {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::gateway_title;

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(gateway_title("  hello\n  world "), "API: hello world");
        assert_eq!(gateway_title(""), "API request");
        assert_eq!(gateway_title(&"é".repeat(100)).chars().count(), 5 + 60);
    }
}
