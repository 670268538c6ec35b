//! What [`Core`] offers about tools: the tools an account may use, a conversation's
//! tool selection, the sources' status for admins, and the tool context of a run
//! (the tools it offers and the tool history of its conversation).

use super::{Core, CoreError, InvalidInput};
use crate::tools::{ExposedTool, SourceStatus, ToolUser};
use chorus_model::history::{ToolStep, history_messages};
use chorus_model::ids::{ConversationId, MessageId};
use chorus_providers::{ChatMessage, ToolSpec};
use chorus_store::{Account, Message};

/// The tools a run offers and the tool history of its conversation.
#[derive(Default)]
pub(super) struct ToolContext {
    pub specs: Vec<ToolSpec>,
    steps: Vec<(MessageId, Vec<ToolStep>)>,
}

impl ToolContext {
    pub fn steps_of(&self, message: &MessageId) -> &[ToolStep] {
        self.steps
            .iter()
            .find(|(m, _)| m == message)
            .map_or(&[], |(_, s)| s.as_slice())
    }

    /// An assistant message of the history with its tool calls and results, or
    /// `None` when it made none.
    pub fn replay(&self, message: &Message) -> Option<Vec<ChatMessage>> {
        let steps = self.steps_of(&message.id);
        (!steps.is_empty()).then(|| history_messages(&message.content, steps))
    }
}

impl Core {
    /// The tools `account` may use (`GET /api/tools`).
    pub async fn tools_for(&self, account: &Account) -> Result<Vec<ExposedTool>, CoreError> {
        Ok(self.tools.available_to(&self.tool_user(account).await?))
    }

    /// `account` as the tool host judges it: with its platform identities when some
    /// source admits accounts by identity.
    async fn tool_user<'a>(&self, account: &'a Account) -> Result<ToolUser<'a>, CoreError> {
        let mut user = ToolUser::account(account);
        user.tool_servers = self.account_tool_servers(account).await?;
        if self.tools.needs_identities() {
            user.identities = self
                .store
                .identities_of(&account.id)
                .await?
                .into_iter()
                .map(|i| (i.platform, i.external_id))
                .collect();
        }
        Ok(user)
    }

    /// Every tool source with its state (admins only).
    pub fn tool_sources(&self, _: &super::Admin) -> Vec<SourceStatus> {
        self.tools.statuses()
    }

    /// The tools a conversation offers its model.
    pub async fn conversation_tools(
        &self,
        account: &Account,
        id: &ConversationId,
    ) -> Result<Vec<String>, CoreError> {
        self.store
            .conversation(&account.id, id)
            .await?
            .ok_or(CoreError::NotFound("conversation"))?;
        Ok(self.store.conversation_tools(id).await?)
    }

    /// Sets the tools a conversation offers: tool server ids (all their tools) and
    /// tool names, each one `account` may use.
    pub async fn set_conversation_tools(
        &self,
        account: &Account,
        id: &ConversationId,
        tools: Vec<String>,
    ) -> Result<Vec<String>, CoreError> {
        if tools.len() > 200 {
            return Err(InvalidInput::TooManyTools { max: 200 }.into());
        }
        self.tools
            .check_selection(&self.tool_user(account).await?, &tools)
            .map_err(InvalidInput::UnknownTool)?;
        let mut tools = tools;
        tools.dedup();
        if !self
            .store
            .set_conversation_tools(&account.id, id, &tools)
            .await?
        {
            return Err(CoreError::NotFound("conversation"));
        }
        Ok(tools)
    }

    pub(super) async fn tool_context(
        &self,
        account: &Account,
        conversation: &ConversationId,
    ) -> Result<ToolContext, CoreError> {
        let selection = self.store.conversation_tools(conversation).await?;
        let steps = self.store.conversation_tool_steps(conversation).await?;
        self.tool_context_of(account, &selection, steps).await
    }

    /// [`Core::tool_context`] from a conversation's tool selection and steps already
    /// read.
    pub(super) async fn tool_context_of(
        &self,
        account: &Account,
        selection: &[String],
        steps: Vec<(MessageId, Vec<ToolStep>)>,
    ) -> Result<ToolContext, CoreError> {
        Ok(ToolContext {
            specs: self
                .tools
                .specs_for(&self.tool_user(account).await?, selection),
            steps,
        })
    }
}

// ---- MCP resources and prompts ----

impl Core {
    /// The MCP servers `account` may use, or only `server` when named.
    async fn mcp_servers_for(
        &self,
        account: &Account,
        server: Option<&str>,
    ) -> Result<Vec<std::sync::Arc<crate::mcp::McpServer>>, CoreError> {
        let user = self.tool_user(account).await?;
        let servers: Vec<_> = self
            .mcp
            .iter()
            .filter(|s| s.access().allows(&user) && user.may_use_server(s.id_str()))
            .filter(|s| server.is_none_or(|id| s.id_str() == id))
            .cloned()
            .collect();
        if server.is_some() && servers.is_empty() {
            return Err(CoreError::NotFound("tool server"));
        }
        Ok(servers)
    }

    /// The resources of every connected MCP server `account` may use.
    pub async fn mcp_resources(
        &self,
        account: &Account,
    ) -> Result<Vec<crate::mcp::ResourceInfo>, CoreError> {
        let mut all = Vec::new();
        for server in self.mcp_servers_for(account, None).await? {
            match server.resources().await {
                Ok(list) => all.extend(list),
                Err(e) => tracing::debug!(server = server.id_str(), error = %e, "no resources"),
            }
        }
        Ok(all)
    }

    /// A resource's text, to attach to a message.
    pub async fn read_mcp_resource(
        &self,
        account: &Account,
        server: &str,
        uri: &str,
    ) -> Result<String, CoreError> {
        let server = self.mcp_servers_for(account, Some(server)).await?.remove(0);
        server
            .read_resource(uri)
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))
    }

    /// The prompts of every connected MCP server `account` may use.
    pub async fn mcp_prompts(
        &self,
        account: &Account,
    ) -> Result<Vec<crate::mcp::PromptInfo>, CoreError> {
        let mut all = Vec::new();
        for server in self.mcp_servers_for(account, None).await? {
            match server.prompts().await {
                Ok(list) => all.extend(list),
                Err(e) => tracing::debug!(server = server.id_str(), error = %e, "no prompts"),
            }
        }
        Ok(all)
    }

    /// A prompt rendered with its arguments.
    pub async fn get_mcp_prompt(
        &self,
        account: &Account,
        server: &str,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<crate::mcp::PromptText>, CoreError> {
        let server = self.mcp_servers_for(account, Some(server)).await?.remove(0);
        server
            .get_prompt(name, arguments)
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))
    }
}
