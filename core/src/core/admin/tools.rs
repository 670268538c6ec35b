//! The Tools area of the admin console: the MCP servers of this instance (state,
//! tools, restarts, last error; restart one) and the code sandbox (whether Docker
//! answers, the executions running on the engine with their run, account and age;
//! kill one). Executions are listed from Docker by label, so they are every
//! instance's (all share the engine); MCP servers are child processes or sessions of
//! each instance, so they are this instance's.

use super::Admin;
use crate::core::{Core, CoreError};
use crate::sandbox::{RunningExecution, Sandbox, SandboxError};
use crate::tools::ToolSource;
use chorus_model::ids::AccountId;
use chorus_store::{Actor, AuditKind, Change};
use serde::Serialize;
use serde_json::json;

/// One MCP server as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct McpServerView {
    pub id: String,
    /// `mcp_stdio` or `mcp_http`.
    pub kind: String,
    /// `connected`, `starting` (never connected yet, no error) or `disconnected`
    /// (reconnecting with backoff after `last_error`).
    pub state: &'static str,
    /// Its tools' names, as it listed them last.
    pub tools: Vec<String>,
    /// Times the supervisor connected again (after a failure or a restart).
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// A running sandbox execution with its account's name.
#[derive(Clone, Debug, Serialize)]
pub struct SandboxExecutionView {
    #[serde(flatten)]
    pub execution: RunningExecution,
    pub account_name: Option<String>,
}

/// The sandbox as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SandboxView {
    /// `sandbox.enabled` in the configuration.
    pub enabled: bool,
    /// Docker answers (a ping within 3 s).
    pub reachable: bool,
    /// Why the executions could not be listed, when they could not.
    pub error: Option<String>,
    pub executions: Vec<SandboxExecutionView>,
}

/// The Tools page.
#[derive(Clone, Debug, Serialize)]
pub struct ToolsPage {
    /// The instance whose MCP servers these are.
    pub instance: String,
    pub mcp_servers: Vec<McpServerView>,
    pub sandbox: SandboxView,
}

impl Core {
    /// MCP servers and sandbox executions, for the Tools page.
    pub async fn tools_page(&self, _: &Admin) -> Result<ToolsPage, CoreError> {
        let mcp_servers = self
            .mcp
            .iter()
            .map(|server| {
                let status = server.status();
                let state = match (status.connected, &status.last_error) {
                    (true, _) => "connected",
                    (false, None) => "starting",
                    (false, Some(_)) => "disconnected",
                };
                McpServerView {
                    id: status.id,
                    kind: status.kind,
                    state,
                    tools: server.tool_names(),
                    restarts: status.restarts,
                    last_error: status.last_error,
                }
            })
            .collect();
        let enabled = self.config.sandbox.enabled;
        let reachable = enabled && self.sandbox.available().await;
        let (executions, error) = if !reachable {
            (Vec::new(), None)
        } else {
            match self.sandbox.executions().await {
                Ok(list) => (list, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        };
        let mut views = Vec::with_capacity(executions.len());
        for execution in executions {
            let account_name = match execution.account_id.as_deref().and_then(AccountId::parse) {
                Some(id) => self.store.account(&id).await?.map(|a| a.name),
                None => None,
            };
            views.push(SandboxExecutionView {
                execution,
                account_name,
            });
        }
        Ok(ToolsPage {
            instance: self.config.instance_id(),
            mcp_servers,
            sandbox: SandboxView {
                enabled,
                reachable,
                error,
                executions: views,
            },
        })
    }

    /// Restarts an MCP server of this instance (its process is stopped and started,
    /// an HTTP session opened again); audited.
    pub async fn admin_restart_mcp_server(&self, admin: &Admin, id: &str) -> Result<(), CoreError> {
        let server = self
            .mcp
            .iter()
            .find(|s| s.id_str() == id)
            .ok_or(CoreError::NotFound("tool server"))?;
        let status = server.status();
        server.restart();
        let actor: Actor = admin.actor();
        self.store
            .record_event(&Change {
                kind: AuditKind::Admin,
                actor: &actor,
                action: "restart_mcp_server",
                object_type: "mcp_server",
                object_id: Some(id),
                before: json!({
                    "connected": status.connected,
                    "restarts": status.restarts,
                    "instance": self.config.instance_id(),
                }),
                after: json!({"restart_requested": true}),
            })
            .await?;
        Ok(())
    }

    /// Kills a sandbox execution on any instance; its tool call ends with "stopped
    /// by an administrator" and its containers and volume are removed by the
    /// instance running it. Audited.
    pub async fn admin_kill_execution(
        &self,
        admin: &Admin,
        execution: &str,
    ) -> Result<(), CoreError> {
        let listed = self
            .sandbox
            .executions()
            .await
            .map_err(sandbox_error)?
            .into_iter()
            .find(|e| e.id == execution);
        if !self
            .sandbox
            .kill_execution(execution)
            .await
            .map_err(sandbox_error)?
        {
            return Err(CoreError::NotFound("sandbox execution"));
        }
        let actor: Actor = admin.actor();
        self.store
            .record_event(&Change {
                kind: AuditKind::Admin,
                actor: &actor,
                action: "kill_sandbox_execution",
                object_type: "sandbox_execution",
                object_id: Some(execution),
                before: json!(listed),
                after: json!({"killed": true}),
            })
            .await?;
        Ok(())
    }
}

/// A disabled sandbox runs no execution (so there is none to kill); anything else
/// is Docker failing to answer.
fn sandbox_error(e: SandboxError) -> CoreError {
    match e {
        SandboxError::Disabled => CoreError::NotFound("sandbox execution"),
        other => CoreError::Unavailable(other.to_string()),
    }
}
