//! The code sandbox behind the `code_interpreter` tool: each execution runs in a fresh
//! Docker container (no network, memory/CPU/pids/time limits, read-only root, no
//! capabilities, an unprivileged user) with the conversation's workspace copied in
//! and, within the quota, copied back out.
//!
//! - `config`: the `[sandbox]` section (images per language, limits).
//! - `workspace`: workspaces on the host, tar in and out, safe file reads.
//! - `container`: the container an execution gets, and the guard that removes it.
//! - `docker`: [`DockerSandbox`], the [`Sandbox`] on a Docker engine (bollard).
//! - `output`: bounded capture of stdout and stderr.
//! - `tool`: [`SandboxTool`], the `code_interpreter` tool source for the tool host.

mod config;
mod container;
mod docker;
mod output;
mod tool;
mod workspace;

pub use config::{DEFAULT_IMAGE, LanguageConfig, SandboxConfig};
pub use container::{LABEL, LABEL_ACCOUNT, LABEL_EXECUTION, LABEL_INSTANCE, LABEL_ROLE, LABEL_RUN};
pub use docker::{DockerSandbox, RunningExecution};
pub use tool::{SOURCE_ID, SandboxTool};
pub use workspace::{WorkspaceError, WorkspaceFile, Workspaces, safe_relative};

use chorus_model::ids::{AccountId, ConversationId, RunId};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The tool's name as models see it.
pub const TOOL_NAME: &str = "code_interpreter";

/// One program to run in one conversation's workspace.
#[derive(Clone, Debug)]
pub struct ExecutionRequest {
    pub account: AccountId,
    pub conversation: ConversationId,
    /// The run whose tool call asks for it, labelled on its containers (for the
    /// admin console); `None` outside a run.
    pub run: Option<RunId>,
    /// A configured language name (or a synonym such as `python3`, `bash`).
    pub language: String,
    pub code: String,
}

/// What an execution did. Serializes as the `tool_result` payload.
#[derive(Clone, Debug, Serialize)]
pub struct Execution {
    pub language: String,
    /// The program's exit code; `None` when it was killed before it ended.
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Killed at the wall-clock limit.
    pub timed_out: bool,
    /// Killed by the kernel at the memory limit.
    pub oom_killed: bool,
    /// Killed by an administrator from the admin console.
    pub stopped_by_admin: bool,
    /// Files of the workspace this execution created or changed (path, size).
    pub files: Vec<WorkspaceFile>,
    /// Plain-language notes for the model: limits hit, files not kept.
    pub notes: Vec<String>,
    pub duration_ms: u64,
}

impl Execution {
    /// The text a model reads as the tool's output.
    pub fn to_tool_output(&self) -> String {
        let mut out = String::new();
        if !self.stdout.is_empty() {
            out.push_str("stdout:\n");
            out.push_str(&self.stdout);
            if !self.stdout.ends_with('\n') {
                out.push('\n');
            }
        }
        if !self.stderr.is_empty() {
            out.push_str("stderr:\n");
            out.push_str(&self.stderr);
            if !self.stderr.ends_with('\n') {
                out.push('\n');
            }
        }
        match self.exit_code {
            Some(code) => out.push_str(&format!("exit code: {code}\n")),
            None => out.push_str("exit code: none (killed)\n"),
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        if !self.files.is_empty() {
            out.push_str("files written (in /mnt/data):\n");
            for f in &self.files {
                out.push_str(&format!("  {} ({} bytes)\n", f.path, f.size));
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the code sandbox is disabled (sandbox.enabled = false)")]
    Disabled,
    #[error("the code sandbox is unavailable: Docker is not reachable at {host}: {reason}")]
    Unavailable { host: String, reason: String },
    #[error("unknown language `{given}`; the sandbox runs: {known}")]
    UnknownLanguage { given: String, known: String },
    #[error(
        "the sandbox image `{image}` is not on the Docker host; build it with \
         scripts/sandbox-image or set sandbox.languages.{language}.image to a pulled image"
    )]
    ImageMissing { image: String, language: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the sandbox is busy: no execution slot freed within {0} seconds")]
    QueueTimeout(u64),
    #[error("the execution was cancelled")]
    Cancelled,
    #[error("the execution was stopped by an administrator before the program started")]
    StoppedByAdmin,
    #[error("Docker: {0}")]
    Docker(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

impl From<bollard::errors::Error> for SandboxError {
    fn from(e: bollard::errors::Error) -> Self {
        SandboxError::Docker(e.to_string())
    }
}

/// Runs programs in isolation for the `code_interpreter` tool.
#[async_trait::async_trait]
pub trait Sandbox: Send + Sync {
    /// Whether executions can run now (enabled, Docker answers). The tool host offers
    /// the tool only when this is true.
    async fn available(&self) -> bool;

    /// The configured language names, for the tool's schema.
    fn languages(&self) -> Vec<String>;

    /// Runs one program. Waits for a slot when `max_concurrent` are running.
    /// Cancelling `cancel` (or dropping the future) kills and removes the container.
    async fn execute(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> Result<Execution, SandboxError>;
}

/// The tool's description and JSON schema for its arguments `{language, code}`.
pub fn tool_schema(languages: &[String]) -> (String, serde_json::Value) {
    let description = format!(
        "Runs a program in an isolated sandbox with no network access and returns its \
         stdout, stderr and exit code. Languages: {}. The working directory /mnt/data \
         persists between executions in this conversation: save files there to use \
         them later or to give them to the user.",
        languages.join(", ")
    );
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "language": {"type": "string", "enum": languages, "description": "Language of the program."},
            "code": {"type": "string", "description": "The complete program to run."}
        },
        "required": ["language", "code"],
        "additionalProperties": false
    });
    (description, schema)
}
