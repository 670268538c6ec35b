//! TEMPORARY copy of the core chat API from the shared brief, so this crate compiles
//! before the lead's `chorus_core::chat` lands. Deleted when main is merged.
#![allow(dead_code, unused_variables)]

use chorus_core::Core;
use chorus_core::ids::RunId;
use chorus_core::store::Identity;
use std::sync::Arc;

pub struct ChatContext {
    pub surface: String,
    pub channel_key: String,
    pub identity: Identity,
    pub display_name: Option<String>,
}

pub enum Command {
    Ask(String),
    Stop,
    Continue,
    Regenerate,
    Resume(Option<String>),
    New(Option<String>),
    Model(Option<String>),
    Link(Option<String>),
    Usage,
    Help(Option<String>),
}

pub enum ChatOutcome {
    Reply(String),
    Render { run_id: RunId, notice: Option<String> },
}

#[async_trait::async_trait]
pub trait MessageSink: Send + Sync + 'static {
    fn limits(&self) -> SinkLimits;
    async fn post(&self, markdown: &str) -> Result<String, SinkError>;
    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError>;
    async fn typing(&self, on: bool) -> Result<(), SinkError>;
}

pub struct SinkLimits {
    pub max_bytes: usize,
    pub min_edit_interval: std::time::Duration,
    pub max_edits_per_message: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("rate limited for {retry_after:?}")]
    RateLimited { retry_after: std::time::Duration },
    #[error("{0}")]
    Failed(String),
}

pub trait SinkFactory: Send + Sync + 'static {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>>;
}

#[derive(Clone)]
pub struct RenderHub;

impl RenderHub {
    pub fn render(&self, channel_key: &str, run_id: RunId) {}
    pub async fn resume_unfinished(&self) {}
    pub async fn channel_of_message(&self, message_id: &str) -> Option<String> {
        None
    }
    pub async fn shutdown(&self) {}
}

pub trait CoreChatExt {
    fn chat_text(
        &self,
        ctx: &ChatContext,
        text: &str,
        prefix: &str,
    ) -> impl std::future::Future<Output = ChatOutcome> + Send;
    fn chat_command(
        &self,
        ctx: &ChatContext,
        command: Command,
    ) -> impl std::future::Future<Output = ChatOutcome> + Send;
    fn render_hub(&self, surface: &str, factory: Arc<dyn SinkFactory>) -> RenderHub;
}

impl CoreChatExt for Core {
    async fn chat_text(&self, ctx: &ChatContext, text: &str, prefix: &str) -> ChatOutcome {
        ChatOutcome::Reply(String::new())
    }
    async fn chat_command(&self, ctx: &ChatContext, command: Command) -> ChatOutcome {
        ChatOutcome::Reply(String::new())
    }
    fn render_hub(&self, surface: &str, factory: Arc<dyn SinkFactory>) -> RenderHub {
        RenderHub
    }
}
