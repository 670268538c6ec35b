//! The common shape of a provider e2e test: a fake provider, a [`TestServer`]
//! configured for it, a logged-in client and (usually) one conversation, plus the
//! steps every such test takes: send a message and read its run's events to the
//! `finished` event, and wait for the run to end.

use crate::{ApiClient, Resume, SentMessage, ServerConfig, SseEvent, TestServer};
use crate::{logged_in_client, unique_name};
use anyhow::Result;
use serde_json::Value;
use std::time::Duration;

/// How long a provider test waits for a run to end.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// A fake provider with a server and a logged-in client in front of it.
pub struct ProviderCase<F> {
    pub fake: F,
    /// Kept for its lifetime (and its log on failure).
    pub server: TestServer,
    pub client: ApiClient,
    /// Empty when made [`without_conversation`](Self::without_conversation).
    pub conversation: String,
}

impl<F> ProviderCase<F> {
    /// Starts a server with `config`, logs in a fresh `user_prefix-…` account and
    /// creates a conversation with `model`.
    pub async fn start(
        fake: F,
        config: ServerConfig,
        user_prefix: &str,
        model: &str,
    ) -> Result<Self> {
        let mut case = Self::without_conversation(fake, config, user_prefix).await?;
        case.conversation = case.client.create_conversation(Some(model)).await?;
        Ok(case)
    }

    /// The same as [`start`](Self::start) without creating a conversation.
    pub async fn without_conversation(
        fake: F,
        config: ServerConfig,
        user_prefix: &str,
    ) -> Result<Self> {
        let server = TestServer::start(config).await?;
        let client = logged_in_client(&server, &unique_name(user_prefix)).await?;
        Ok(Self {
            fake,
            server,
            client,
            conversation: String::new(),
        })
    }

    /// Sends `text` to the conversation and reads its run's events from the start
    /// to `finished`.
    pub async fn send_to_finished(&self, text: &str) -> Result<(SentMessage, Vec<SseEvent>)> {
        let sent = self.client.send_message(&self.conversation, text).await?;
        let events = self
            .client
            .events_to_finished(&sent.run_id, Resume::Start)
            .await?;
        Ok((sent, events))
    }

    /// The run once it has ended, waiting at most [`RUN_TIMEOUT`].
    pub async fn run_ended(&self, run_id: &str) -> Result<Value> {
        self.client.wait_run_ended(run_id, RUN_TIMEOUT).await
    }
}
