//! The progressive renderer: follows a run's journal and turns it into platform
//! messages through a surface's [`MessageSink`] — a typing notice while nothing has
//! arrived, throttled edits (spaced, capped per message, backed off on rate limits),
//! new messages when the text outgrows the surface's limit, and a final edit with the
//! complete text and how the reply ended.
//!
//! Each binding has one renderer at a time ([`RenderHub`]). Its state (which platform
//! messages show which reply, and the last rendered seq) is saved in `renders`, so a
//! restarted process finishes the same messages ([`RenderHub::resume_unfinished`]);
//! a reply a restart interrupted is continued once, automatically.

mod renderer;

use crate::core::Core;
use chorus_model::ids::RunId;
use renderer::Renderer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A surface's limits for one message and its edits (each surface fills them from
/// its own config section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkLimits {
    /// The most bytes of markdown one message may hold.
    pub max_bytes: usize,
    /// The least time between two edits of the reply (clients choke on edit storms).
    pub min_edit_interval: Duration,
    /// Edits of one message before only its final edit is sent.
    pub max_edits_per_message: u32,
}

/// Why a sink could not post or edit.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The platform asked us to slow down: the renderer waits `retry_after`.
    #[error("rate limited for {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Failed(String),
}

/// The surface side of progressive rendering: one thread or channel to post into.
#[async_trait::async_trait]
pub trait MessageSink: Send + Sync + 'static {
    fn limits(&self) -> SinkLimits;
    /// Posts a new message (markdown) and returns its platform id.
    async fn post(&self, markdown: &str) -> Result<String, SinkError>;
    /// Replaces the whole text of a message this sink posted.
    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError>;
    /// Shows "typing…" (while nothing has arrived yet) or clears it.
    async fn typing(&self, on: bool) -> Result<(), SinkError>;
}

/// Builds the sink of a binding; `None` when the channel is gone (left room).
pub trait SinkFactory: Send + Sync + 'static {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>>;
}

/// One surface's renderers: at most one per binding, saved state, resumption.
#[derive(Clone)]
pub struct RenderHub {
    inner: Arc<HubInner>,
}

/// A binding's renderer: generation, cancel token, and the binding's turn lock.
type Running = (u64, CancellationToken, Arc<tokio::sync::Mutex<()>>);

struct HubInner {
    core: Core,
    surface: String,
    command_prefix: String,
    factory: Arc<dyn SinkFactory>,
    /// The renderer of each binding: its generation, cancel token, and the lock a
    /// replacing renderer waits on until the replaced one has let go of the messages.
    running: Mutex<HashMap<String, Running>>,
    generation: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Core {
    /// The renderers of one surface. `command_prefix` is how the surface's users type
    /// commands (the final notes of stopped replies name `PREFIX continue`).
    pub fn render_hub(
        &self,
        surface: &str,
        command_prefix: &str,
        factory: Arc<dyn SinkFactory>,
    ) -> RenderHub {
        RenderHub {
            inner: Arc::new(HubInner {
                core: self.clone(),
                surface: surface.to_string(),
                command_prefix: command_prefix.to_string(),
                factory,
                running: Mutex::new(HashMap::new()),
                generation: Default::default(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }
}

impl RenderHub {
    /// Starts the renderer of `channel_key` for `run_id`, replacing the binding's
    /// current one (a continuation of the same message goes on in the same messages).
    pub fn render(&self, channel_key: &str, run_id: RunId) {
        let inner = self.inner.clone();
        if inner.shutdown.is_cancelled() {
            return;
        }
        let Some(sink) = inner.factory.sink(channel_key) else {
            tracing::warn!(surface = %inner.surface, channel = %channel_key, "no sink for the binding; not rendering");
            return;
        };
        let generation = inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancel = inner.shutdown.child_token();
        let turn = {
            let mut running = inner.running.lock().expect("render map poisoned");
            let turn = match running.get(channel_key) {
                Some((_, old, turn)) => {
                    old.cancel();
                    turn.clone()
                }
                None => Arc::new(tokio::sync::Mutex::new(())),
            };
            running.insert(
                channel_key.to_string(),
                (generation, cancel.clone(), turn.clone()),
            );
            turn
        };
        let key = channel_key.to_string();
        self.inner.tasks.spawn(async move {
            // One renderer edits a binding's messages at a time: a replaced one ends
            // (its final edit included) before this one reads the saved state.
            let _turn = turn.lock().await;
            if cancel.is_cancelled() {
                return;
            }
            let renderer = Renderer::new(&inner, &key, sink, cancel);
            if let Err(e) = renderer.run(run_id.clone()).await {
                tracing::warn!(surface = %inner.surface, channel = %key, run = %run_id, error = %e, "rendering failed");
            }
            let mut running = inner.running.lock().expect("render map poisoned");
            if running.get(&key).is_some_and(|(g, _, _)| *g == generation) {
                running.remove(&key);
            }
        });
    }

    /// Resumes every render of this surface a previous process left unfinished: each
    /// binding's newest run of its message is followed (or, if a restart interrupted
    /// it, continued) in the messages already posted.
    pub async fn resume_unfinished(&self) {
        let inner = &self.inner;
        let pending = match inner.core.store().unfinished_renders(&inner.surface).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(surface = %inner.surface, error = %e, "cannot read unfinished renders");
                return;
            }
        };
        for (key, state) in pending {
            let latest = inner
                .core
                .store()
                .latest_run_of_message(&state.message_id)
                .await;
            match latest {
                Ok(Some(run)) => {
                    tracing::info!(surface = %inner.surface, channel = %key, run = %run.id, "resuming an unfinished render");
                    self.render(&key, run.id);
                }
                Ok(None) => {
                    tracing::warn!(channel = %key, "unfinished render of a message without runs")
                }
                Err(e) => tracing::warn!(channel = %key, error = %e, "cannot resume a render"),
            }
        }
    }

    /// The surface whose renderers these are.
    pub fn surface(&self) -> &str {
        &self.inner.surface
    }

    /// The sink of a binding, from the surface's factory (`None` when the channel is
    /// gone).
    pub fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        self.inner.factory.sink(channel_key)
    }

    /// The binding a message posted by one of this hub's renderers belongs to.
    pub async fn channel_of_message(&self, message_id: &str) -> Option<String> {
        match self
            .inner
            .core
            .store()
            .channel_of_message(&self.inner.surface, message_id)
            .await
        {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up a rendered message");
                None
            }
        }
    }

    /// Stops every renderer, leaving their state unfinished so that the next process
    /// resumes them. Call before the core shuts down (its runs end `interrupted`).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
