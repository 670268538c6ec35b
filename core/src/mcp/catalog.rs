//! MCP resources and prompts of a server: listed, read and rendered on demand, so a
//! user can attach a resource's text to a message or start one from a prompt.

use super::output::block_text;
use super::server::McpServer;
use crate::tools::ToolCallError;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use serde::Serialize;

/// A resource a server offers.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceInfo {
    pub server: String,
    pub uri: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

/// A prompt a server offers, with the arguments it takes.
#[derive(Clone, Debug, Serialize)]
pub struct PromptInfo {
    pub server: String,
    pub name: String,
    pub description: Option<String>,
    pub arguments: Vec<PromptArgumentInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PromptArgumentInfo {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
}

/// One message of a rendered prompt, as text.
#[derive(Clone, Debug, Serialize)]
pub struct PromptText {
    /// `user` or `assistant`.
    pub role: String,
    pub text: String,
}

fn failed(server: &McpServer, e: impl std::fmt::Display) -> ToolCallError {
    ToolCallError::Failed {
        source_id: server.id_str().to_string(),
        reason: e.to_string(),
    }
}

impl McpServer {
    pub async fn resources(&self) -> Result<Vec<ResourceInfo>, ToolCallError> {
        let peer = self.peer()?;
        let list = peer
            .list_all_resources()
            .await
            .map_err(|e| failed(self, e))?;
        Ok(list
            .into_iter()
            .map(|r| ResourceInfo {
                server: self.id_str().to_string(),
                uri: r.uri.clone(),
                name: r.name.clone(),
                description: r.description.clone(),
                mime_type: r.mime_type.clone(),
            })
            .collect())
    }

    /// The resource's text (binary contents are described, not inlined).
    pub async fn read_resource(&self, uri: &str) -> Result<String, ToolCallError> {
        let peer = self.peer()?;
        let result = peer
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .map_err(|e| failed(self, e))?;
        Ok(result
            .contents
            .iter()
            .map(|c| match c {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[binary resource {uri}]")
                }
                #[allow(unreachable_patterns)]
                _ => "[resource]".to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    pub async fn prompts(&self) -> Result<Vec<PromptInfo>, ToolCallError> {
        let peer = self.peer()?;
        let list = peer.list_all_prompts().await.map_err(|e| failed(self, e))?;
        Ok(list
            .into_iter()
            .map(|p| PromptInfo {
                server: self.id_str().to_string(),
                name: p.name,
                description: p.description,
                arguments: p
                    .arguments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| PromptArgumentInfo {
                        name: a.name,
                        description: a.description,
                        required: a.required.unwrap_or(false),
                    })
                    .collect(),
            })
            .collect())
    }

    /// The prompt rendered with `arguments`, as text messages.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<PromptText>, ToolCallError> {
        let peer = self.peer()?;
        let mut params = GetPromptRequestParams::new(name);
        if !arguments.is_empty() {
            params = params.with_arguments(arguments);
        }
        let result = peer.get_prompt(params).await.map_err(|e| failed(self, e))?;
        Ok(result
            .messages
            .iter()
            .map(|m| PromptText {
                role: serde_json::to_value(&m.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "user".into()),
                text: block_text(&m.content),
            })
            .collect())
    }
}
