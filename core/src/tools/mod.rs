//! The tool host: every tool a model may call, whatever provides it, behind one
//! interface.
//!
//! A [`ToolSource`] is anything that lists tools and runs them: each configured MCP
//! server is one, and internal tools (the code sandbox) are others. The host names
//! their tools for models (`source__tool`, see [`naming`]; an internal source may keep
//! bare names, like `code_interpreter`), decides which accounts may
//! use which source, and runs calls with the per-call timeout and output size limit,
//! so sources only do their own work. A call never fails the run: whatever goes
//! wrong becomes a [`ToolResult`] with `is_error`, which goes back to the model.

pub mod naming;

use chorus_model::ids::{AccountId, ConversationId};
use chorus_providers::ToolSpec;
use chorus_store::{Account, Role};
use serde::Serialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::field::Empty;

/// A tool as its source describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceTool {
    /// The source's own name for it (what the source is called with).
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub input_schema: serde_json::Value,
}

/// What a tool returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    /// The tool reported a failure (the text says what).
    pub is_error: bool,
    /// Structured detail for clients (the sandbox's execution with its files), put on
    /// the `tool_result` event beside the text; the model reads only the text.
    pub details: Option<serde_json::Value>,
}

/// Whose call it is: the run's account and conversation. Sources that keep state per
/// conversation (the sandbox's workspace) need it; MCP servers ignore it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallContext {
    pub account_id: AccountId,
    pub conversation_id: ConversationId,
    /// The run making the call (labelled on sandbox containers for the admin
    /// console); `None` outside a run.
    pub run_id: Option<chorus_model::ids::RunId>,
}

/// Why a source could not run a call at all.
#[derive(Debug, thiserror::Error)]
pub enum ToolCallError {
    /// The source is not connected (starting, restarting, or given up).
    #[error("tool source `{source_id}` is unavailable: {reason}")]
    Unavailable { source_id: String, reason: String },
    /// The source failed during the call (connection lost, protocol error).
    #[error("tool source `{source_id}` failed during the call: {reason}")]
    Failed { source_id: String, reason: String },
}

/// A source's state, for admins.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    pub id: String,
    /// `mcp_stdio`, `mcp_http`, `internal`...
    pub kind: String,
    pub connected: bool,
    pub tool_count: usize,
    pub last_error: Option<String>,
    /// Times the source was restarted after it died.
    pub restarts: u64,
}

/// A provider of tools. Implement this to add a tool to Chorus (MCP servers do, and
/// so can an internal tool such as the code sandbox): list the tools, run a call.
///
/// Cancellation is by drop: the host drops the `call` future when the call times out
/// or the run is stopped, so a source must release what a call holds (an MCP request,
/// a container) when its future is dropped.
#[async_trait::async_trait]
pub trait ToolSource: Send + Sync {
    /// The source id: the `source` of `source__tool` (see [`naming::valid_source_id`]).
    fn id(&self) -> &str;
    /// The tools it offers now (may change over time).
    fn tools(&self) -> Vec<SourceTool>;
    /// Whether models see its tools by their own names (`code_interpreter`) rather
    /// than as `source__tool`. Only for internal sources, whose names cannot collide
    /// with the prefixed MCP ones (those always contain `__`).
    fn bare_names(&self) -> bool {
        false
    }
    /// Runs `tool` with `arguments` (a JSON object) for the run `context` describes.
    async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
        context: &ToolCallContext,
    ) -> Result<ToolOutput, ToolCallError>;
    fn status(&self) -> SourceStatus;
    /// Stops the source (child processes, connections) on shutdown.
    async fn shutdown(&self) {}
}

/// Who may use a source: the accounts whose ids are in `accounts`, the accounts
/// holding one of the platform identities in `identities`, and accounts with a role
/// in `roles`; everyone when all three are empty. Account names are not accepted:
/// single sign-on and chat surfaces hand them out first come, first served from what
/// a provider or platform suggests, so a name proves nothing about who holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolAccess {
    pub roles: Vec<String>,
    /// Account ids.
    pub accounts: Vec<String>,
    /// `(platform, external id)` pairs, e.g. `("discord", "80351110224678912")`.
    pub identities: Vec<(String, String)>,
}

/// Who asks for tools: an account and its platform identities (read only when some
/// source names identities; see [`ToolHost::needs_identities`]), and the tool
/// servers its role may use (the access policy: `None`, every one).
pub struct ToolUser<'a> {
    pub account: &'a Account,
    pub identities: Vec<(String, String)>,
    pub tool_servers: crate::access::Allow,
}

impl<'a> ToolUser<'a> {
    /// A user whose identities do not matter here (no source names any) and whose
    /// role may use every server.
    pub fn account(account: &'a Account) -> Self {
        Self {
            account,
            identities: Vec::new(),
            tool_servers: None,
        }
    }

    /// Whether the access policy lets this user's role use the source `id`.
    pub fn may_use_server(&self, id: &str) -> bool {
        self.tool_servers
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| crate::access::name_matches(e, id)))
    }

    /// Whether `user` may use `source`: its own access rule and the role's policy.
    fn admitted(&self, source: &dyn ToolSource, access: &ToolAccess) -> bool {
        access.allows(self) && self.may_use_server(source.id())
    }
}

impl ToolAccess {
    pub fn allows(&self, user: &ToolUser<'_>) -> bool {
        let account = user.account;
        (self.roles.is_empty() && self.accounts.is_empty() && self.identities.is_empty())
            || self.accounts.iter().any(|a| a == account.id.as_str())
            || self.identities.iter().any(|i| user.identities.contains(i))
            || self.roles.iter().any(|r| r == account.role.as_str())
            || (account.role == Role::Admin && self.roles.iter().any(|r| r == "user"))
    }
}

/// Limits every call is held to.
#[derive(Clone, Debug)]
pub struct ToolSettings {
    pub call_timeout: Duration,
    pub max_output_bytes: usize,
    /// Rounds of tool calls a run may make before it ends with `max_tool_steps`.
    pub max_steps: u32,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            max_output_bytes: 100_000,
            max_steps: 10,
        }
    }
}

/// A tool as models and clients see it.
#[derive(Clone, Debug, Serialize)]
pub struct ExposedTool {
    /// The name models call it by (`source__tool`, made safe).
    pub name: String,
    pub source: String,
    /// The source's own name for it.
    pub tool: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

impl ExposedTool {
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.input_schema.clone(),
        }
    }
}

/// The outcome of one call, as the model and the journal get it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub output: String,
    pub is_error: bool,
    /// The output was cut to `max_output_bytes` (a note at its end says so).
    pub truncated: bool,
    /// Structured detail for clients (see [`ToolOutput::details`]).
    pub details: Option<serde_json::Value>,
}

impl ToolResult {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            output: message.into(),
            is_error: true,
            truncated: false,
            details: None,
        }
    }
}

struct Registered {
    source: Arc<dyn ToolSource>,
    access: ToolAccess,
}

/// Every tool source of this instance.
pub struct ToolHost {
    sources: RwLock<Vec<Registered>>,
    settings: ToolSettings,
}

impl ToolHost {
    pub fn new(settings: ToolSettings) -> Self {
        Self {
            sources: RwLock::new(Vec::new()),
            settings,
        }
    }

    pub fn settings(&self) -> &ToolSettings {
        &self.settings
    }

    /// Adds a source; its tools are offered to the accounts `access` allows.
    pub fn register(&self, source: Arc<dyn ToolSource>, access: ToolAccess) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Registered { source, access });
    }

    fn sources(&self) -> Vec<(Arc<dyn ToolSource>, ToolAccess)> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| (r.source.clone(), r.access.clone()))
            .collect()
    }

    /// Every tool the sources offer now, named for models. A name that two tools
    /// would share (only when cleaned names and a hash collide) keeps the first.
    fn catalog(&self, user: Option<&ToolUser<'_>>) -> Vec<ExposedTool> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (source, access) in self.sources() {
            if user.is_some_and(|u| !u.admitted(source.as_ref(), &access)) {
                continue;
            }
            let mut tools = source.tools();
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            for t in tools {
                let name = if source.bare_names() {
                    t.name.clone()
                } else {
                    naming::exposed_name(source.id(), &t.name)
                };
                if !seen.insert(name.clone()) {
                    tracing::warn!(source = source.id(), tool = %t.name, %name, "tool name collides; tool left out");
                    continue;
                }
                out.push(ExposedTool {
                    name,
                    source: source.id().to_string(),
                    tool: t.name,
                    description: t.description,
                    input_schema: t.input_schema,
                });
            }
        }
        out
    }

    /// Whether some source admits accounts by platform identity, so a caller must
    /// read the account's identities into its [`ToolUser`].
    pub fn needs_identities(&self) -> bool {
        self.sources()
            .iter()
            .any(|(_, access)| !access.identities.is_empty())
    }

    /// The tools `user` may use.
    pub fn available_to(&self, user: &ToolUser<'_>) -> Vec<ExposedTool> {
        self.catalog(Some(user))
    }

    /// The tools a run offers: those `account` may use and `selection` names, either
    /// by exposed tool name or by source id (all of its tools).
    pub fn specs_for(&self, user: &ToolUser<'_>, selection: &[String]) -> Vec<ToolSpec> {
        if selection.is_empty() {
            return Vec::new();
        }
        self.available_to(user)
            .iter()
            .filter(|t| selection.iter().any(|s| s == &t.name || s == &t.source))
            .map(ExposedTool::spec)
            .collect()
    }

    /// Checks a selection: every entry must name a source or tool `account` may use.
    /// Checks that each entry of `selection` is a tool server or a tool `account` may
    /// use; the first that is neither is the error.
    pub fn check_selection(&self, user: &ToolUser<'_>, selection: &[String]) -> Result<(), String> {
        let tools = self.available_to(user);
        let sources: Vec<String> = self
            .sources()
            .into_iter()
            .filter(|(s, access)| user.admitted(s.as_ref(), access))
            .map(|(s, _)| s.id().to_string())
            .collect();
        for s in selection {
            if !sources.contains(s) && !tools.iter().any(|t| &t.name == s) {
                return Err(s.clone());
            }
        }
        Ok(())
    }

    /// Runs the tool a model called `exposed` with the call timeout and output limit.
    /// Never fails: problems come back as an error result for the model. Each call is
    /// a span (`chorus.tool.call`) and counts in `chorus_tool_calls_total` by source.
    #[tracing::instrument(
        name = "chorus.tool.call",
        skip_all,
        fields(
            gen_ai.tool.name = %exposed,
            chorus.tool.source = Empty,
            chorus.tool.result = Empty,
            chorus.tool.output_bytes = Empty,
            otel.status_code = Empty,
        )
    )]
    pub async fn call(
        &self,
        exposed: &str,
        arguments: serde_json::Value,
        context: &ToolCallContext,
    ) -> ToolResult {
        let Some(tool) = self.catalog(None).into_iter().find(|t| t.name == exposed) else {
            return ToolResult::error(format!("unknown tool `{exposed}`"));
        };
        let Some((source, _)) = self
            .sources()
            .into_iter()
            .find(|(s, _)| s.id() == tool.source)
        else {
            return ToolResult::error(format!("unknown tool `{exposed}`"));
        };
        let span = tracing::Span::current();
        span.record("chorus.tool.source", source.id());
        let timeout = self.settings.call_timeout;
        let started = std::time::Instant::now();
        let (result, outcome) = match tokio::time::timeout(
            timeout,
            source.call(&tool.tool, arguments, context),
        )
        .await
        {
            Err(_) => (
                ToolResult::error(format!(
                    "the tool `{exposed}` did not answer within {} s (call timeout) and was cancelled",
                    timeout.as_secs_f64()
                )),
                "timeout",
            ),
            Ok(Err(e)) => (ToolResult::error(e.to_string()), "error"),
            Ok(Ok(out)) => {
                let outcome = if out.is_error { "error" } else { "ok" };
                (
                    ToolResult {
                        output: out.text,
                        is_error: out.is_error,
                        truncated: false,
                        details: out.details,
                    },
                    outcome,
                )
            }
        };
        crate::telemetry::metrics::tool_call(source.id(), outcome, started.elapsed());
        span.record("chorus.tool.result", outcome);
        span.record("chorus.tool.output_bytes", result.output.len());
        if outcome != "ok" {
            span.record("otel.status_code", "ERROR");
        }
        truncate(result, self.settings.max_output_bytes)
    }

    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.sources().iter().map(|(s, _)| s.status()).collect()
    }

    /// Stops every source (child processes included).
    pub async fn shutdown(&self) {
        let sources = self.sources();
        futures::future::join_all(sources.iter().map(|(s, _)| s.shutdown())).await;
    }
}

/// Cuts an output longer than `max` bytes (at a character boundary) and says so at
/// its end, so the model knows it sees a part.
fn truncate(mut result: ToolResult, max: usize) -> ToolResult {
    if result.output.len() <= max {
        return result;
    }
    let total = result.output.len();
    let mut cut = max;
    while !result.output.is_char_boundary(cut) {
        cut -= 1;
    }
    result.output.truncate(cut);
    result.output.push_str(&format!(
        "\n\n[output truncated: the tool returned {total} bytes; only the first {cut} are shown]"
    ));
    result.truncated = true;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_outputs_are_cut_at_a_char_boundary_with_a_note() {
        let r = truncate(
            ToolResult {
                output: "é".repeat(10),
                is_error: false,
                truncated: false,
                details: None,
            },
            5,
        );
        assert!(r.truncated);
        assert!(
            r.output
                .starts_with("éé\n\n[output truncated: the tool returned 20 bytes")
        );
        let short = truncate(ToolResult::error("x"), 5);
        assert!(!short.truncated && short.output == "x");
    }

    /// A source that answers with the conversation it was called for.
    struct Whoami {
        bare: bool,
    }

    #[async_trait::async_trait]
    impl ToolSource for Whoami {
        fn id(&self) -> &str {
            if self.bare { "internal" } else { "srv" }
        }
        fn tools(&self) -> Vec<SourceTool> {
            vec![SourceTool {
                name: "whoami".into(),
                description: String::new(),
                input_schema: serde_json::json!({"type": "object"}),
            }]
        }
        fn bare_names(&self) -> bool {
            self.bare
        }
        async fn call(
            &self,
            _tool: &str,
            _arguments: serde_json::Value,
            context: &ToolCallContext,
        ) -> Result<ToolOutput, ToolCallError> {
            Ok(ToolOutput {
                text: context.conversation_id.to_string(),
                is_error: false,
                details: Some(serde_json::json!({"account": context.account_id.to_string()})),
            })
        }
        fn status(&self) -> SourceStatus {
            unreachable!("not asked in these tests")
        }
    }

    #[tokio::test]
    async fn calls_get_their_context_and_bare_sources_keep_their_names() {
        let host = ToolHost::new(ToolSettings::default());
        host.register(Arc::new(Whoami { bare: true }), ToolAccess::default());
        host.register(Arc::new(Whoami { bare: false }), ToolAccess::default());
        let names: Vec<String> = host.catalog(None).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["whoami", "srv__whoami"]);
        let context = ToolCallContext {
            account_id: chorus_model::ids::AccountId::generate(),
            conversation_id: chorus_model::ids::ConversationId::generate(),
            run_id: None,
        };
        let r = host.call("whoami", serde_json::json!({}), &context).await;
        assert_eq!(r.output, context.conversation_id.to_string());
        assert_eq!(
            r.details,
            Some(serde_json::json!({"account": context.account_id.to_string()}))
        );
        let r = host
            .call("srv__whoami", serde_json::json!({}), &context)
            .await;
        assert!(!r.is_error && r.details.is_some());
    }

    /// The access policy's server list hides a source's tools from the role, in the
    /// tools offered to a model and in what a selection may name.
    #[test]
    fn the_role_policy_hides_servers() {
        let host = ToolHost::new(ToolSettings::default());
        host.register(Arc::new(Whoami { bare: true }), ToolAccess::default());
        host.register(Arc::new(Whoami { bare: false }), ToolAccess::default());
        let alice = Account {
            id: chorus_model::ids::AccountId::generate(),
            name: "alice".into(),
            role: Role::User,
            status: Account::ACTIVE.into(),
            password_hash: None,
            created_at: 0,
        };
        let mut user = ToolUser::account(&alice);
        user.tool_servers = Some(vec!["internal".into()]);
        let names: Vec<String> = host
            .available_to(&user)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["whoami"]);
        let specs = host.specs_for(&user, &["srv".into(), "internal".into()]);
        assert_eq!(specs.len(), 1);
        assert_eq!(
            host.check_selection(&user, &["srv".into()]),
            Err("srv".into())
        );
        user.tool_servers = None;
        assert_eq!(host.available_to(&user).len(), 2);
    }

    #[test]
    fn access_by_role_and_account() {
        let account = |name: &str, role| Account {
            id: chorus_model::ids::AccountId::generate(),
            name: name.into(),
            role,
            status: "active".into(),
            password_hash: None,
            created_at: 0,
        };
        let alice = account("alice", Role::User);
        let admin = account("root", Role::Admin);
        let (alice_user, admin_user) = (ToolUser::account(&alice), ToolUser::account(&admin));
        assert!(ToolAccess::default().allows(&alice_user));
        let admins = ToolAccess {
            roles: vec!["admin".into()],
            ..ToolAccess::default()
        };
        assert!(!admins.allows(&alice_user) && admins.allows(&admin_user));
        let by_id = ToolAccess {
            accounts: vec![alice.id.to_string()],
            ..ToolAccess::default()
        };
        assert!(by_id.allows(&alice_user) && !by_id.allows(&admin_user));
        // A name is not an id: whoever took the name "alice" first gets nothing by it.
        let by_name = ToolAccess {
            accounts: vec!["alice".into()],
            ..ToolAccess::default()
        };
        assert!(!by_name.allows(&alice_user));
        let by_identity = ToolAccess {
            identities: vec![("discord".into(), "42".into())],
            ..ToolAccess::default()
        };
        assert!(!by_identity.allows(&alice_user));
        let linked = ToolUser {
            account: &alice,
            identities: vec![("discord".into(), "42".into())],
            tool_servers: None,
        };
        assert!(by_identity.allows(&linked));
        let elsewhere = ToolUser {
            account: &admin,
            identities: vec![("matrix".into(), "42".into())],
            tool_servers: None,
        };
        assert!(!by_identity.allows(&elsewhere));
    }
}
