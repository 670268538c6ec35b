//! The code sandbox as surfaces see it: the files of a conversation's workspace, read
//! by its owner only, and the sandbox itself for the tool host.

use super::{Core, CoreError, InvalidInput};
use crate::sandbox::{SandboxTool, WorkspaceError, WorkspaceFile};
use crate::tools::ToolAccess;
use chorus_model::ids::ConversationId;
use chorus_store::Account;
use std::sync::Arc;

impl Core {
    /// Removes sandbox containers a previous life of this instance left behind, then
    /// registers the `code_interpreter` tool (for every account) with its
    /// availability known, and keeps that availability fresh in the background.
    pub(super) async fn start_sandbox(&self) {
        if !self.config.sandbox.enabled {
            return;
        }
        if let Err(e) = self.sandbox.reap_orphans().await {
            tracing::warn!(error = %e, "sandbox orphans not reaped (the tool is offered once Docker answers)");
        }
        let tool = Arc::new(SandboxTool::new(self.sandbox.clone()));
        if !tool.refresh().await {
            tracing::warn!("Docker does not answer: code_interpreter is not offered until it does");
        }
        tool.spawn_refresher();
        self.tools.register(tool, ToolAccess::default());
    }

    /// The files in a conversation's sandbox workspace; another account's
    /// conversation is "not found".
    pub async fn conversation_files(
        &self,
        account: &Account,
        id: &ConversationId,
    ) -> Result<Vec<WorkspaceFile>, CoreError> {
        self.owned_conversation(account, id).await?;
        self.sandbox
            .workspaces()
            .list(&account.id, id)
            .await
            .map_err(workspace_error)
    }

    /// Opens one workspace file of an owned conversation for download: the file and
    /// its size. Paths leaving the workspace are refused.
    pub async fn conversation_file(
        &self,
        account: &Account,
        id: &ConversationId,
        path: &str,
    ) -> Result<(tokio::fs::File, u64), CoreError> {
        self.owned_conversation(account, id).await?;
        self.sandbox
            .workspaces()
            .open(&account.id, id, path)
            .await
            .map_err(workspace_error)
    }

    /// Removes a deleted conversation's workspace (waiting for a running execution
    /// of it to end first); a failure is logged, the conversation is gone either way.
    pub(super) async fn delete_sandbox_workspace(&self, account: &Account, id: &ConversationId) {
        if let Err(e) = self.sandbox.workspaces().remove(&account.id, id).await {
            tracing::warn!(conversation = %id, error = %e, "sandbox workspace not removed");
        }
    }

    async fn owned_conversation(
        &self,
        account: &Account,
        id: &ConversationId,
    ) -> Result<(), CoreError> {
        self.store
            .conversation(&account.id, id)
            .await?
            .map(|_| ())
            .ok_or(CoreError::NotFound("conversation"))
    }
}

fn workspace_error(e: WorkspaceError) -> CoreError {
    match e {
        WorkspaceError::NotFound => CoreError::NotFound("file"),
        other => InvalidInput::Workspace(other).into(),
    }
}
