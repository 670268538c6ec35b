//! [`Core`]: what every surface calls. It resolves the account, checks ownership and
//! input, and drives the store, the engine and the journal. Surfaces never reach
//! past it.

use crate::auth::{self, AuthError};
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, RunJob};
use crate::journal::{Journal, JournalEntry, MemoryJournal, RedisJournal, RunEvent};
use crate::quota::{Limiter, PriceTable};
use crate::sso::{Sso, SsoError};
use crate::telemetry::timing;
use crate::tools::{ToolCallContext, ToolHost};
use chorus_model::ids::{ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use chorus_providers::{ChatMessage, ChatRequest, ChatRole, ModelInfo, ProviderRegistry};
use chorus_store::{Account, Conversation, Message, NewTurn, Role, Run, Store};
use std::sync::Arc;
use tracing::Instrument;

mod tools;
use std::time::Duration;

mod ledger;
mod linking;

pub use ledger::UsageReport;
pub use linking::IssuedLinkCode;
mod access;
mod admin;
mod error;
mod follow;
mod gateway;
mod identity;
mod sandbox;
mod sessions;
mod surfaces;
pub use access::{
    AccessSetting, AccessView, GROUP_MEMBERS_PAGE, GroupDetail, GroupView, RoleAccessView,
};
pub use admin::{
    ADMIN_PAGE, AccountDetail, Activity, Admin, McpServerView, ModelPrice, Overview,
    ProviderSummary, ProvidersPage, SandboxExecutionView, SandboxView, ToolsPage,
};
pub use error::{Conflict, CoreError, Forbidden, InvalidInput};
pub use gateway::{GatewayKeep, GatewayRequest, GatewayRun, GatewayRunOptions};
pub use identity::{IdentityView, SsoCallback, SsoLogin, SsoStart};
pub use surfaces::{SurfaceState, SurfaceStatus};

/// A conversation with its whole message tree.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConversationView {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    /// The tool calls and results of assistant messages, by message id.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tool_steps: std::collections::BTreeMap<String, Vec<chorus_model::history::ToolStep>>,
}

/// A run as a client sees it: its status and the text generated so far.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    /// The message text before this run (what a continuation extends).
    pub prefix: String,
    /// The last journal seq included in `text`.
    pub seq: u64,
}

/// A configured provider and its recent health.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProviderView {
    pub id: String,
    pub kind: crate::config::ProviderKind,
    pub health: chorus_providers::ProviderHealth,
}

/// What sending a message started.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SentMessage {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub assistant_message_id: MessageId,
    pub run_id: RunId,
}

#[derive(Clone)]
pub struct Core {
    pub(crate) store: Store,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) providers: Arc<ProviderRegistry>,
    pub(crate) engine: Engine,
    pub(crate) tools: Arc<ToolHost>,
    /// The MCP servers (also tool sources of `tools`), for resources and prompts.
    pub(crate) mcp: Arc<Vec<Arc<crate::mcp::McpServer>>>,
    pub(crate) config: Arc<Config>,
    pub(crate) prices: Arc<PriceTable>,
    /// Rate and guessing limits (Redis when the journal is, else in process).
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) sandbox: Arc<crate::sandbox::DockerSandbox>,
    pub(crate) sso: Arc<Sso>,
    /// How each chat surface's connection stands (for `/readyz`).
    surfaces: surfaces::SurfaceBoard,
    /// Bounds the password hashing that runs at once (logins need no account).
    pub(crate) hashing: Arc<auth::HashGate>,
    /// Set once local runs were interrupted, so a shutdown does it once.
    runs_interrupted: Arc<tokio::sync::OnceCell<()>>,
    /// A suspended account's attempts, coalesced before they reach the audit log.
    pub(crate) suspended_attempts: Arc<admin::AttemptCoalescer>,
    /// Accounts whose gateway requests were refused lately (no early provider calls).
    pub(crate) gateway_refusals: Arc<gateway::RecentRefusals>,
    /// Which roles may use which models and tool servers (config + overrides).
    pub(crate) access: Arc<crate::access::AccessCache>,
}

/// How long a shutdown waits for local runs to end as `interrupted`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Core {
    /// Connects storage and journal, migrates, and asks providers configured without
    /// models which they serve. A serving instance then calls
    /// [`Core::start_background`].
    pub async fn start(config: Config) -> Result<Self, CoreError> {
        let core = Self::open(config, true).await?;
        core.start_sandbox().await;
        Ok(core)
    }

    /// The core for one-shot admin commands (`user create`, `apikey create`): no model
    /// discovery, so an unreachable provider never delays them, and no background
    /// work, so they never touch the runs of a server that shares their instance name.
    /// With it comes the operator's [`Admin`] capability, for admin operations.
    pub async fn start_for_admin(config: Config) -> Result<(Self, Admin), CoreError> {
        Ok((Self::open(config, false).await?, Admin::operator()))
    }

    async fn open(config: Config, discover_models: bool) -> Result<Self, CoreError> {
        let mut store = Store::connect(
            config.database_url().expose(),
            config.database.max_connections,
        )
        .await?;
        store.migrate().await?;
        store.set_initial_balance(crate::quota::credits_to_micros(
            config.accounts.default_balance,
        ));
        let limiter = Arc::new(match &config.journal.redis_url {
            Some(url) => Limiter::redis(url.expose(), &config.journal.key_prefix).await?,
            None => Limiter::memory(),
        });
        let prices = Arc::new(PriceTable::from_config(&config));
        let retention = Duration::from_secs(config.journal.retention_secs);
        let journal: Arc<dyn Journal> = match &config.journal.redis_url {
            Some(url) => Arc::new(
                RedisJournal::connect(url.expose(), &config.journal.key_prefix, retention).await?,
            ),
            None => Arc::new(MemoryJournal::new(retention)),
        };
        let mut providers = ProviderRegistry::from_config(
            &config.effective_providers(),
            config.engine.default_model.as_deref(),
        );
        // Providers configured without models (Ollama) list theirs; an unreachable one
        // is skipped with a warning.
        if discover_models {
            providers.discover_models().await;
        }
        providers.add_aliases(&config.aliases);
        let providers = Arc::new(providers);
        let tools = Arc::new(ToolHost::new(config.tools.settings()));
        // MCP servers are started for a serving instance only, never for admin commands.
        let mcp = Arc::new(if discover_models {
            crate::mcp::start_servers(&config.mcp, &tools)
        } else {
            Vec::new()
        });
        let engine = Engine::new(
            store.clone(),
            journal.clone(),
            providers.clone(),
            tools.clone(),
            EngineSettings {
                owner: config.instance_id(),
                lease_ttl: Duration::from_secs(config.engine.lease_ttl_secs),
                checkpoint_interval: Duration::from_millis(config.engine.checkpoint_interval_ms),
                prices: prices.clone(),
                include_content: config.telemetry.include_content,
            },
        );
        let sandbox = Arc::new(crate::sandbox::DockerSandbox::new(
            config.sandbox.clone(),
            &config.data_dir(),
            &config.instance_id(),
        ));
        let config_limits = config.limits.clone();
        let access = Arc::new(crate::access::AccessCache::new(config.access.clone()));
        Ok(Self {
            access,
            store,
            journal,
            providers,
            engine,
            sso: Arc::new(Sso::new(
                config.auth.public_url.as_deref(),
                &config.auth.oidc,
                &config.auth.oauth2,
            )),
            tools,
            mcp,
            config: Arc::new(config),
            prices,
            limiter,
            sandbox,
            surfaces: Default::default(),
            hashing: Arc::new(auth::HashGate::new(
                config_limits.password_hash_concurrency,
                Duration::from_millis(config_limits.password_hash_wait_ms),
            )),
            runs_interrupted: Arc::new(tokio::sync::OnceCell::new()),
            suspended_attempts: Arc::default(),
            gateway_refusals: Arc::default(),
        })
    }

    /// Starts the background work of a serving instance: the sweeper that marks runs
    /// of dead instances (and this instance's previous life) interrupted, and the
    /// hourly purge of expired sessions, and the publishing of this instance's provider
    /// figures for the console.
    pub fn start_background(&self) {
        self.engine.start_background();
        let store = self.store.clone();
        self.engine
            .spawn_housekeeping(|stop| sessions::purge_expired_forever(store, stop));
        let (store, providers) = (self.store.clone(), self.providers.clone());
        let instance = self.config.instance_id();
        self.engine
            .spawn_housekeeping(|stop| admin::publish_forever(store, providers, instance, stop));
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Brings the database schema up to date (`chorus migrate`), without starting a core.
    pub async fn migrate(config: &Config) -> Result<(), CoreError> {
        let store = Store::connect(config.database_url().expose(), None).await?;
        store.migrate().await?;
        store.close().await;
        Ok(())
    }

    /// The first phase of a graceful shutdown: stops every local run (kept as
    /// `interrupted`, so its readers see it finish), waiting up to the grace period.
    /// Idempotent: [`Core::shutdown`] does it too, only when it was not done yet.
    pub async fn interrupt_runs(&self) {
        self.runs_interrupted
            .get_or_init(|| self.engine.shutdown(SHUTDOWN_GRACE))
            .await;
    }

    /// The one graceful shutdown: interrupts local runs (unless
    /// [`Core::interrupt_runs`] already did), stops the tool sources and closes the
    /// database.
    pub async fn shutdown(&self) {
        self.interrupt_runs().await;
        self.tools.shutdown().await;
        self.store.close().await;
    }

    /// Whether storage and journal answer.
    pub async fn ready(&self) -> bool {
        self.store.ping().await && self.journal.ping().await
    }

    // ---- accounts and authentication ----

    /// Creates a local account; the password is hashed with argon2.
    pub async fn create_account(
        &self,
        name: &str,
        admin: bool,
        password: Option<&str>,
    ) -> Result<Account, CoreError> {
        validate_account_name(name)?;
        let hash = match password {
            Some(pw) => Some(self.hash_password(pw).await?),
            None => None,
        };
        let role = if admin {
            Role::Admin
        } else {
            self.default_role()
        };
        Ok(self
            .store
            .create_account(name, role, hash.as_deref())
            .await?)
    }

    /// Hashes a new password through the hashing gate (argon2 takes tens of
    /// milliseconds of CPU, off the async workers and bounded in number).
    pub(crate) async fn hash_password(&self, password: &str) -> Result<String, CoreError> {
        let pw = password.to_string();
        match self.hashing.run(move || auth::hash_password(&pw)).await {
            Ok(hash) => Ok(hash?),
            Err(auth::GateError::Busy) => {
                Err(CoreError::RateLimited(auth::GateError::Busy.to_string()))
            }
            Err(auth::GateError::Failed(e)) => Err(AuthError::Hash(e).into()),
        }
    }

    /// How many accounts exist (a fresh install has none).
    pub async fn account_count(&self) -> Result<i64, CoreError> {
        Ok(self.store.account_count().await?)
    }

    /// Checks a name and password; returns the account and a new session token.
    /// Failures count per account name and client address (see [`Core::login`]).
    async fn check_login(
        &self,
        name: &str,
        password: &str,
    ) -> Result<(Account, String), CoreError> {
        if !self.config.auth.local_passwords {
            return Err(SsoError::LocalPasswordsDisabled.into());
        }
        let account = self.store.account_by_name(name).await?;
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        let (pw, stored) = (password.to_string(), hash.clone());
        let ok = match self
            .hashing
            .run(move || {
                auth::verify_password(&pw, stored.as_deref().unwrap_or(auth::dummy_hash()))
            })
            .await
        {
            Ok(ok) => ok,
            Err(auth::GateError::Busy) => {
                return Err(CoreError::RateLimited(auth::GateError::Busy.to_string()));
            }
            Err(auth::GateError::Failed(_)) => false,
        };
        // The name of an account merged into another still logs in, to that account.
        let account = match account {
            Some(a) if ok && hash.is_some() && a.is_suspended() => {
                self.usable_account(Some(a), "login").await?;
                return Err(CoreError::Unauthorized); // not reached: refused above
            }
            Some(a) if ok && hash.is_some() => self
                .store
                .live_account(&a)
                .await?
                .ok_or(CoreError::Unauthorized)?,
            _ => return Err(CoreError::Unauthorized),
        };
        let token = auth::new_token();
        let ttl_ms = self.config.auth.session_ttl_hours as i64 * 3_600_000;
        self.store
            .create_session(&auth::token_hash(&token), &account.id, now_ms() + ttl_ms)
            .await?;
        Ok((account, token))
    }

    pub async fn logout(&self, session_token: &str) -> Result<(), CoreError> {
        Ok(self
            .store
            .delete_session(&auth::token_hash(session_token))
            .await?)
    }

    /// The active account of a session token; a suspended account's session is
    /// refused with `Forbidden::AccountSuspended`. The session's use (and
    /// `user_agent`, the browser's) is recorded for the owner's list of sessions.
    pub async fn account_by_session(
        &self,
        token: &str,
        user_agent: Option<&str>,
    ) -> Result<Option<Account>, CoreError> {
        let account = self
            .store
            .account_by_session(&auth::token_hash(token), user_agent)
            .await?;
        self.usable_account(account, "web session").await
    }

    /// The account of a login name (the CLI names accounts this way).
    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>, CoreError> {
        Ok(self.store.account_by_name(name).await?)
    }

    // ---- models ----

    /// The configured providers with their recent health on this instance (admins only).
    pub fn provider_health(&self, _: &Admin) -> Vec<ProviderView> {
        let providers = self.providers.providers();
        let ids: Vec<String> = providers.iter().map(|(id, _)| id.clone()).collect();
        let health = self.providers.health().snapshot(&ids);
        providers
            .into_iter()
            .zip(health)
            .map(|((id, kind), health)| ProviderView { id, kind, health })
            .collect()
    }

    pub fn models(&self) -> &[ModelInfo] {
        self.providers.models()
    }

    pub fn default_model(&self) -> &str {
        self.providers.default_model()
    }

    pub(crate) fn check_model(&self, model: &str) -> Result<(), CoreError> {
        self.providers
            .resolve(model)
            .map(|_| ())
            .map_err(CoreError::from)
    }

    // ---- conversations ----

    pub async fn create_conversation(
        &self,
        account: &Account,
        title: Option<&str>,
        model: Option<&str>,
        system_prompt: Option<&str>,
    ) -> Result<Conversation, CoreError> {
        let model = match model {
            Some(m) => m.to_string(),
            None => self.default_model_for(account).await?,
        };
        self.check_model_for(account, &model).await?;
        let title = title
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("New chat");
        if title.chars().count() > 200 {
            return Err(InvalidInput::TitleTooLong { max: 200 }.into());
        }
        Ok(self
            .store
            .create_conversation(&account.id, title, &model, system_prompt)
            .await?)
    }

    pub async fn list_conversations(
        &self,
        account: &Account,
    ) -> Result<Vec<Conversation>, CoreError> {
        Ok(self.store.list_conversations(&account.id, 200).await?)
    }

    pub async fn conversation(
        &self,
        account: &Account,
        id: &ConversationId,
    ) -> Result<ConversationView, CoreError> {
        let conversation = self
            .store
            .conversation(&account.id, id)
            .await?
            .ok_or(CoreError::NotFound("conversation"))?;
        let messages = self.store.messages(id).await?;
        let tool_steps = self
            .store
            .conversation_tool_steps(id)
            .await?
            .into_iter()
            .map(|(m, steps)| (m.to_string(), steps))
            .collect();
        Ok(ConversationView {
            conversation,
            messages,
            tool_steps,
        })
    }

    pub async fn rename_conversation(
        &self,
        account: &Account,
        id: &ConversationId,
        title: &str,
    ) -> Result<(), CoreError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(InvalidInput::TitleLength { max: 200 }.into());
        }
        if self
            .store
            .rename_conversation(&account.id, id, title)
            .await?
        {
            Ok(())
        } else {
            Err(CoreError::NotFound("conversation"))
        }
    }

    pub async fn delete_conversation(
        &self,
        account: &Account,
        id: &ConversationId,
    ) -> Result<(), CoreError> {
        if self.store.delete_conversation(&account.id, id).await? {
            self.delete_sandbox_workspace(account, id).await;
            Ok(())
        } else {
            Err(CoreError::NotFound("conversation"))
        }
    }

    /// Adds a user message (under `parent`, or the newest message) and starts the
    /// assistant's run. The run belongs to the server: the caller may go away.
    pub async fn send_message(
        &self,
        account: &Account,
        conversation_id: &ConversationId,
        content: &str,
        parent: Option<&MessageId>,
        model: Option<&str>,
    ) -> Result<SentMessage, CoreError> {
        let place = match parent {
            Some(p) => Place::Under(p),
            None => Place::Newest,
        };
        self.send_message_at(account, conversation_id, content, place, model, "web")
            .await
    }

    /// [`Core::send_message`] with the place of the new message spelled out (a
    /// regenerated first question goes at the root, beside the old one) and the
    /// surface it was asked on. Its span is the root of the reply's trace.
    #[tracing::instrument(
        name = "chorus.reply",
        skip_all,
        fields(surface = surface, conversation_id = %conversation_id, chorus.kind = "message")
    )]
    pub(crate) async fn send_message_at(
        &self,
        account: &Account,
        conversation_id: &ConversationId,
        content: &str,
        place: Place<'_>,
        model: Option<&str>,
        surface: &'static str,
    ) -> Result<SentMessage, CoreError> {
        if content.trim().is_empty() {
            return Err(InvalidInput::EmptyMessage.into());
        }
        let max = self.config.engine.max_message_chars;
        if content.chars().count() > max {
            return Err(InvalidInput::MessageTooLong { max }.into());
        }
        if content.contains('\0') {
            return Err(InvalidInput::NulCharacter.into());
        }
        timing::set_kind("message");
        let mut context = self
            .store
            .turn_context(&account.id, conversation_id)
            .await?
            .ok_or(CoreError::NotFound("conversation"))?;
        timing::mark("conversation");
        let conversation = &context.conversation;
        let model = model.unwrap_or(&conversation.model).to_string();
        self.check_model_for(account, &model).await?;
        timing::mark("model_check");
        let parent_id = match place {
            Place::Root => None,
            Place::Under(p) => {
                if !context.has_message(p) {
                    return Err(CoreError::NotFound("parent message"));
                }
                Some(p.clone())
            }
            Place::Newest => context.latest_message().cloned(),
        };
        // Context: the branch up to the parent, then the new message.
        let before = match &parent_id {
            Some(p) => context.branch(p),
            None => Vec::new(),
        };
        timing::mark("branch");
        let tools = self
            .tool_context_of(
                account,
                &context.tools,
                std::mem::take(&mut context.tool_steps),
            )
            .await?;
        timing::mark("tools");
        let mut request = build_request(&context.conversation, &before, &model, None, &tools);
        request
            .messages
            .push(ChatMessage::text(ChatRole::User, content));
        let admission = self
            .admission(account, &model, &request)
            .instrument(tracing::info_span!("chorus.admission", chorus.model_ref = %model))
            .await?;
        timing::mark("admission");
        let turn = NewTurn {
            account_id: account.id.clone(),
            conversation_id: conversation_id.clone(),
            parent_id,
            content: content.to_string(),
            model: model.clone(),
        };
        let settings = self.engine.settings();
        let lease_until = now_ms() + settings.lease_ttl.as_millis() as i64;
        let ids = self
            .store
            .start_turn_admitted(&turn, &settings.owner, lease_until, &admission)
            .await?;
        timing::mark("turn_write");
        self.engine.spawn(RunJob {
            run_id: ids.run_id.clone(),
            tool_context: ToolCallContext {
                account_id: account.id.clone(),
                conversation_id: conversation_id.clone(),
                run_id: Some(ids.run_id.clone()),
            },
            message_id: ids.assistant_message_id.to_string(),
            model_ref: model,
            request,
            prefix: String::new(),
            pending_calls: Vec::new(),
            client_tools: false,
            surface,
            early: None,
            finish_first: false,
        });
        timing::mark("spawn");
        Ok(SentMessage {
            conversation_id: conversation_id.clone(),
            message_id: ids.user_message_id,
            assistant_message_id: ids.assistant_message_id,
            run_id: ids.run_id,
        })
    }

    // ---- runs ----

    /// A run, only if `account` owns it.
    pub async fn owned_run(&self, account: &Account, id: &RunId) -> Result<Run, CoreError> {
        match self.store.run(id).await? {
            Some(run) if run.account_id == account.id => Ok(run),
            _ => Err(CoreError::NotFound("run")),
        }
    }

    /// A run with its text so far: exact from the journal while it streams, else
    /// as stored.
    pub async fn run_view(&self, account: &Account, id: &RunId) -> Result<RunView, CoreError> {
        let mut run = self.owned_run(account, id).await?;
        let content = self.store.message_content(&run.message_id).await?;
        let mut prefix = content
            .get(..run.prefix_len.max(0) as usize)
            .unwrap_or_default()
            .to_string();
        let mut seq = run.checkpoint_seq.max(0) as u64;
        if run.status.is_active() {
            let backlog = self.journal.backlog(id, 0).await?;
            if backlog.last().is_some_and(|e| e.event.is_finished()) {
                // It ended between the two reads: the store has its final state now.
                run = self.owned_run(account, id).await?;
                seq = backlog.last().map_or(seq, |e| e.seq);
            } else if !backlog.is_empty() {
                let (text, last, started_prefix) = replay(&backlog);
                if text.len() >= run.text.len() {
                    run.text = text;
                    seq = last;
                }
                if let Some(p) = started_prefix {
                    prefix = p;
                }
            }
        }
        Ok(RunView { run, prefix, seq })
    }

    /// Asks the run to stop, wherever it executes. Idempotent.
    pub async fn stop_run(&self, account: &Account, id: &RunId) -> Result<Run, CoreError> {
        let run = self.owned_run(account, id).await?;
        if run.status.is_active() && !self.engine.stop_local(id) {
            self.store.request_stop(id).await?;
        }
        Ok(run)
    }

    /// Starts a run that extends the message of a stopped or interrupted run from its
    /// partial text.
    pub async fn continue_run(&self, account: &Account, id: &RunId) -> Result<RunId, CoreError> {
        self.continue_run_on(account, id, "web").await
    }

    /// [`Core::continue_run`] asked on `surface`. Its span is the root of the
    /// continuation's trace.
    #[tracing::instrument(name = "chorus.reply", skip_all, fields(surface = surface, chorus.kind = "continue"))]
    pub(crate) async fn continue_run_on(
        &self,
        account: &Account,
        id: &RunId,
        surface: &'static str,
    ) -> Result<RunId, CoreError> {
        let previous = self.owned_run(account, id).await?;
        if previous.status.is_active() {
            return Err(Conflict::RunActive.into());
        }
        if !previous.is_continuable() {
            return Err(Conflict::RunComplete.into());
        }
        let conversation = self
            .store
            .conversation(&account.id, &previous.conversation_id)
            .await?
            .ok_or(CoreError::NotFound("conversation"))?;
        let partial = self.store.message_content(&previous.message_id).await?;
        let model = previous.model.clone();
        self.check_model_for(account, &model).await?;
        let all = self
            .store
            .branch(&previous.conversation_id, &previous.message_id)
            .await?;
        // Context: the branch up to the user message the assistant answers.
        let history: Vec<Message> = all
            .into_iter()
            .filter(|m| m.id != previous.message_id)
            .collect();
        let tools = self
            .tool_context(account, &previous.conversation_id)
            .await?;
        // The message so far: its tool rounds become history, the text after the last
        // one the prefill, and calls left without results run first.
        let replayed =
            chorus_model::history::replay(&partial, tools.steps_of(&previous.message_id));
        let mut request = build_request(
            &conversation,
            &history,
            &model,
            Some(replayed.tail).filter(|t| !t.is_empty()),
            &tools,
        );
        request.messages.extend(replayed.messages);
        let admission = self
            .admission(account, &model, &request)
            .instrument(tracing::info_span!("chorus.admission", chorus.model_ref = %model))
            .await?;
        let settings = self.engine.settings();
        let lease_until = now_ms() + settings.lease_ttl.as_millis() as i64;
        let run_id = self
            .store
            .start_continuation_admitted(
                &previous,
                &model,
                &settings.owner,
                lease_until,
                &admission,
            )
            .await?;
        self.engine.spawn(RunJob {
            run_id: run_id.clone(),
            tool_context: ToolCallContext {
                account_id: account.id.clone(),
                conversation_id: previous.conversation_id.clone(),
                run_id: Some(run_id.clone()),
            },
            message_id: previous.message_id.to_string(),
            model_ref: model,
            request,
            prefix: partial,
            pending_calls: replayed.pending,
            client_tools: false,
            surface,
            early: None,
            finish_first: false,
        });
        Ok(run_id)
    }
}

/// Where a new user message goes in the conversation's tree.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place<'a> {
    /// After the newest message (the usual next turn).
    Newest,
    /// Under this message (an edit or a regenerated answer: a new branch).
    Under(&'a MessageId),
    /// At the root (a new branch of the first question).
    Root,
}

/// The text, last seq and started prefix that a journal backlog adds up to.
fn replay(entries: &[JournalEntry]) -> (String, u64, Option<String>) {
    let mut text = String::new();
    let mut prefix = None;
    for entry in entries {
        match &entry.event {
            RunEvent::Started { prefix: p, .. } => prefix = Some(p.clone()),
            RunEvent::Delta { text: t } => text.push_str(t),
            RunEvent::Snapshot { text: t } => text = t.clone(),
            _ => {}
        }
    }
    (text, entries.last().map_or(0, |e| e.seq), prefix)
}

fn build_request(
    conversation: &Conversation,
    history: &[Message],
    model_ref: &str,
    prefill: Option<String>,
    tools: &tools::ToolContext,
) -> ChatRequest {
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(system) = conversation
        .system_prompt
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        messages.push(ChatMessage::text(ChatRole::System, system));
    }
    for m in history {
        let role = match m.role.as_str() {
            "assistant" => ChatRole::Assistant,
            "system" => ChatRole::System,
            _ => ChatRole::User,
        };
        if role == ChatRole::Assistant
            && let Some(replayed) = tools.replay(m)
        {
            messages.extend(replayed);
            continue;
        }
        if role == ChatRole::Assistant && m.content.is_empty() {
            continue; // a reply that produced nothing adds nothing to the context
        }
        messages.push(ChatMessage::text(role, m.content.clone()));
    }
    ChatRequest {
        model: model_ref
            .split_once('/')
            .map_or(model_ref, |(_, m)| m)
            .to_string(),
        messages,
        prefill,
        tools: tools.specs.clone(),
        ..Default::default()
    }
}

/// Longest account name, in bytes (names are ASCII).
pub(crate) const MAX_ACCOUNT_NAME_LEN: usize = 64;

fn validate_account_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ACCOUNT_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::AccountName {
            name: name.to_string(),
        }
        .into())
    }
}
