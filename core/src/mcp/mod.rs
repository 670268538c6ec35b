//! MCP servers as tool sources: each configured server is connected (a child process
//! over stdio, or streamable HTTP) by the official Rust SDK (`rmcp`), kept alive by a
//! supervisor that restarts it with backoff, and offered to the [`ToolHost`] as a
//! [`ToolSource`](crate::tools::ToolSource).
//!
//! The SDK (3.x) has no legacy HTTP+SSE client transport any more, so `url` servers
//! must speak streamable HTTP.

mod catalog;
pub mod config;
mod output;
mod server;

pub use catalog::{PromptArgumentInfo, PromptInfo, PromptText, ResourceInfo};
pub use config::{McpConfig, McpServerConfig, ToolsConfig};
pub use server::McpServer;

use crate::tools::ToolHost;
use std::sync::Arc;

/// Starts every configured server (connecting in the background) and registers it
/// as a tool source; returns them for their resources and prompts.
pub fn start_servers(config: &McpConfig, host: &ToolHost) -> Vec<Arc<McpServer>> {
    config
        .servers
        .iter()
        .map(|cfg| {
            let server = McpServer::start(cfg.clone());
            host.register(server.clone(), cfg.access());
            server
        })
        .collect()
}
