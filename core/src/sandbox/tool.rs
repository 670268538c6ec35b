//! The sandbox as a tool source: `code_interpreter` beside the MCP tools.
//!
//! `tools()` is synchronous (the host builds catalogs without awaiting), but whether
//! Docker answers takes a round trip. So the source keeps an availability flag: set at
//! start before the server serves (so the first run already sees the tool), refreshed
//! by a background task every [`REFRESH_INTERVAL`], and cleared at once when an
//! execution finds Docker gone. While it is false the tool is not offered at all.

use super::{DockerSandbox, Execution, ExecutionRequest, Sandbox, SandboxError, TOOL_NAME};
use crate::tools::{
    SourceStatus, SourceTool, ToolCallContext, ToolCallError, ToolOutput, ToolSource,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The source id of the sandbox (its tool is exposed by its bare name).
pub const SOURCE_ID: &str = "sandbox";

/// How often the background task asks Docker whether it answers.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The `code_interpreter` tool on a [`DockerSandbox`].
pub struct SandboxTool {
    sandbox: Arc<DockerSandbox>,
    available: AtomicBool,
    last_error: Mutex<Option<String>>,
    stop: CancellationToken,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    language: String,
    code: String,
}

impl SandboxTool {
    /// A source that offers nothing until [`SandboxTool::refresh`] finds Docker.
    pub fn new(sandbox: Arc<DockerSandbox>) -> Self {
        Self {
            sandbox,
            available: AtomicBool::new(false),
            last_error: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    /// Asks the sandbox whether executions can run now and offers the tool accordingly.
    pub async fn refresh(&self) -> bool {
        let ok = self.sandbox.available().await;
        let was = self.available.swap(ok, Ordering::Relaxed);
        if was != ok {
            tracing::info!(available = ok, "code_interpreter availability changed");
        }
        if ok {
            self.set_error(None);
        } else {
            self.set_error(Some(
                "Docker does not answer (or the sandbox is disabled)".into(),
            ));
        }
        ok
    }

    /// Refreshes availability every [`REFRESH_INTERVAL`] until the source is shut down.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let tool = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tool.stop.cancelled() => break,
                    _ = tokio::time::sleep(REFRESH_INTERVAL) => { tool.refresh().await; }
                }
            }
        });
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn output(&self, result: Result<Execution, SandboxError>) -> Result<ToolOutput, ToolCallError> {
        match result {
            Ok(execution) => Ok(ToolOutput {
                text: execution.to_tool_output(),
                is_error: false,
                details: serde_json::to_value(&execution).ok(),
            }),
            Err(e @ (SandboxError::Unavailable { .. } | SandboxError::Disabled)) => {
                self.available.store(false, Ordering::Relaxed);
                self.set_error(Some(e.to_string()));
                Err(ToolCallError::Unavailable {
                    source_id: SOURCE_ID.into(),
                    reason: e.to_string(),
                })
            }
            Err(e) => Ok(ToolOutput {
                text: e.to_string(),
                is_error: true,
                details: None,
            }),
        }
    }
}

#[async_trait::async_trait]
impl ToolSource for SandboxTool {
    fn id(&self) -> &str {
        SOURCE_ID
    }

    fn tools(&self) -> Vec<SourceTool> {
        if !self.available.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let (description, input_schema) = super::tool_schema(&self.sandbox.languages());
        vec![SourceTool {
            name: TOOL_NAME.into(),
            description,
            input_schema,
        }]
    }

    fn bare_names(&self) -> bool {
        true
    }

    async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
        context: &ToolCallContext,
    ) -> Result<ToolOutput, ToolCallError> {
        if tool != TOOL_NAME {
            return Ok(ToolOutput {
                text: format!("unknown tool `{tool}`; the sandbox has `{TOOL_NAME}`"),
                is_error: true,
                details: None,
            });
        }
        let args: Arguments = match serde_json::from_value(arguments) {
            Ok(a) => a,
            Err(e) => {
                return Ok(ToolOutput {
                    text: format!(
                        "bad arguments for {TOOL_NAME}: {e}; expected {{\"language\": \"...\", \"code\": \"...\"}}"
                    ),
                    is_error: true,
                    details: None,
                });
            }
        };
        let request = ExecutionRequest {
            account: context.account_id.clone(),
            conversation: context.conversation_id.clone(),
            run: context.run_id.clone(),
            language: args.language,
            code: args.code,
        };
        // A stop or the call timeout drops this future, which kills and removes the
        // container (see `DockerSandbox::execute`).
        let result = self
            .sandbox
            .execute(request, CancellationToken::new())
            .await;
        self.output(result)
    }

    fn status(&self) -> SourceStatus {
        let connected = self.available.load(Ordering::Relaxed);
        SourceStatus {
            id: SOURCE_ID.into(),
            kind: "internal".into(),
            connected,
            tool_count: usize::from(connected),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            restarts: 0,
        }
    }

    async fn shutdown(&self) {
        self.stop.cancel();
    }
}
