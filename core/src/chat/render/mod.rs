//! The progressive renderer: follows a run's journal and turns it into platform
//! messages through a surface's [`MessageSink`] — a typing notice while nothing has
//! arrived, throttled edits (spaced, capped per message, backed off on rate limits),
//! new messages when the text outgrows the surface's limit, and a final edit with the
//! complete text and how the reply ended.
//!
//! Each binding has one renderer at a time ([`RenderHub`]). Its state (which platform
//! messages show which reply, and the last rendered seq) is saved in `renders`, so a
//! restarted process finishes the same messages ([`RenderHub::resume_unfinished`]);
//! a reply found interrupted there is continued once, automatically (the restart cut
//! it off under its reader's eyes). Any other interrupted reply a renderer shows — one
//! brought here by `resume`, or followed from elsewhere when the instance running it
//! died — ends with its note and the Continue control, as on the web: the person
//! decides whether it goes on (it is paid from their balance).
//!
//! A hub also shows the runs started elsewhere — on the web, on another surface, on
//! another instance — in every binding of their conversation: it subscribes to the
//! journal's run-start announcements when it is made, and renders each announced run in
//! the bindings whose renderer does not already follow it.

mod renderer;

use crate::chat::CommandForms;
use crate::core::Core;
use crate::journal::{RunStartStream, RunStarted};
use chorus_model::ids::RunId;
use chorus_store::Identity;
use futures::StreamExt;
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
    /// Posts a new message (markdown) of a reply being rendered and returns its
    /// platform id.
    async fn post(&self, markdown: &str) -> Result<String, SinkError>;
    /// Posts a one-off message (a command's answer, a notice) that is never edited:
    /// a surface that streams replies natively or puts controls on them does neither
    /// here. By default the same as [`MessageSink::post`].
    async fn post_once(&self, markdown: &str) -> Result<String, SinkError> {
        self.post(markdown).await
    }
    /// Replaces the whole text of a message this sink posted.
    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError>;
    /// Shows "typing…" (while nothing has arrived yet) or clears it.
    async fn typing(&self, on: bool) -> Result<(), SinkError>;

    /// The reply has ended and its final text is shown: `parts` are its messages
    /// (platform id, text shown), in order; `continuable` when `continue` can go on
    /// with it (stopped, interrupted, cut off). Surfaces whose messages carry buttons
    /// (Slack, Discord) swap Stop for Continue and Regenerate here; by default nothing
    /// happens.
    async fn ended(
        &self,
        _parts: &[(String, String)],
        _continuable: bool,
    ) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Builds the sink of a binding; `None` when the channel is gone (left room).
#[async_trait::async_trait]
pub trait SinkFactory: Send + Sync + 'static {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>>;

    /// How the note of a stopped or interrupted reply tells its reader to go on
    /// (`prefix`: how the surface's users type commands). By default a reaction or
    /// the command; a surface that shows a Continue button names it.
    fn continue_hint(&self, prefix: &str) -> String {
        format!("react ▶️ or send `{prefix} continue` to go on")
    }

    /// How core's answers name the command `name` of the shared set with `args` (as
    /// its help shows them; empty for none) — "`{prefix} resume` lists your
    /// conversations", "stop it with `{prefix} stop`" — as a markdown noun phrase. By
    /// default the text command; a surface with slash commands or buttons names those,
    /// which is how its people give commands.
    fn command_hint(&self, prefix: &str, name: &str, args: &str) -> String {
        crate::chat::forms::text_hint(prefix, name, args)
    }

    /// The answer to `help` (`topic`: one command's). By default the shared command
    /// list in text form; a surface adds its own ways (buttons, slash commands).
    fn help(&self, prefix: &str, topic: Option<&str>) -> String {
        crate::chat::help_text(prefix, topic)
    }

    /// Whether only the person writing reads the binding's channel (a direct chat):
    /// a [`ChatOutcome::Private`](crate::chat::ChatOutcome::Private) is then an
    /// ordinary reply there. By default no channel is private.
    async fn is_private(&self, _channel_key: &str) -> bool {
        false
    }

    /// A channel only `user` reads (Matrix: a direct room with them, reused or made
    /// and them invited), for what must not be shown in a shared room. By default a
    /// surface has none, and private text is not sent at all. Surfaces with ephemeral
    /// replies (Discord, Slack) will not need this: they answer ephemerally instead.
    async fn private_sink(&self, _user: &Identity) -> Result<Arc<dyn MessageSink>, SinkError> {
        Err(SinkError::Failed(
            "this surface has no private channel".into(),
        ))
    }
}

/// One surface's renderers: at most one per binding, saved state, resumption.
#[derive(Clone)]
pub struct RenderHub {
    inner: Arc<HubInner>,
}

/// A binding's renderer.
struct Running {
    generation: u64,
    /// The run it follows now (a continuation it started itself replaces it).
    run: RunId,
    cancel: CancellationToken,
    /// The lock a replacing renderer waits on until the replaced one has let go of
    /// the messages.
    turn: Arc<tokio::sync::Mutex<()>>,
}

struct HubInner {
    core: Core,
    surface: String,
    command_prefix: String,
    factory: Arc<dyn SinkFactory>,
    /// The renderer of each binding.
    running: Mutex<HashMap<String, Running>>,
    generation: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Core {
    /// The renderers of one surface. `command_prefix` is how the surface's users type
    /// text commands (`factory` turns it into the surface's forms for the final notes
    /// of stopped replies and core's answers: [`RenderHub::command_forms`]).
    pub fn render_hub(
        &self,
        surface: &str,
        command_prefix: &str,
        factory: Arc<dyn SinkFactory>,
    ) -> RenderHub {
        // Subscribed before the hub exists, so no run started after this call is missed.
        let starts = self.journal.run_starts();
        let hub = RenderHub {
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
        };
        hub.inner.tasks.spawn(show_runs_started_elsewhere(
            Arc::downgrade(&hub.inner),
            hub.inner.shutdown.clone(),
            starts,
        ));
        hub
    }
}

impl HubInner {
    /// Records that the renderer `generation` of `channel_key` now follows `run` (a
    /// continuation it started), so that the run's announcement does not replace it.
    fn now_following(&self, channel_key: &str, generation: u64, run: &RunId) {
        let mut running = self.running.lock().expect("render map poisoned");
        if let Some(current) = running.get_mut(channel_key)
            && current.generation == generation
        {
            current.run = run.clone();
        }
    }
}

/// Renders every announced run in the bindings of its conversation on this surface,
/// until the hub shuts down.
async fn show_runs_started_elsewhere(
    hub: std::sync::Weak<HubInner>,
    shutdown: CancellationToken,
    mut starts: RunStartStream,
) {
    loop {
        let started = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = starts.next() => match next {
                Some(started) => started,
                None => return,
            },
        };
        let Some(inner) = hub.upgrade() else { return };
        RenderHub { inner }.show_started(started).await;
    }
}

impl RenderHub {
    /// Shows an announced run in each binding of its conversation on this surface,
    /// unless that binding already shows it (the surface that started the run hands it
    /// to its renderer itself: whichever comes first renders, once).
    async fn show_started(&self, started: RunStarted) {
        let inner = &self.inner;
        let store = inner.core.store();
        let keys = match store
            .bindings_of_conversation(&inner.surface, &started.conversation_id)
            .await
        {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(surface = %inner.surface, run = %started.run_id, error = %e, "cannot read the bindings of a started run");
                return;
            }
        };
        for key in keys {
            // Rendered already, and ended: a renderer that follows the run is known
            // to `render`, one that has finished it left its state.
            match store.render_state(&inner.surface, &key).await {
                Ok(Some(state)) if state.run_id == started.run_id => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(surface = %inner.surface, channel = %key, error = %e, "cannot read a render state");
                    continue;
                }
            }
            tracing::debug!(surface = %inner.surface, channel = %key, run = %started.run_id, "showing a run started elsewhere");
            self.render(&key, started.run_id.clone());
        }
    }

    /// Starts the renderer of `channel_key` for `run_id`, replacing the binding's
    /// current one (a continuation of the same message goes on in the same messages).
    /// Nothing changes when the binding's renderer already follows `run_id`.
    pub fn render(&self, channel_key: &str, run_id: RunId) {
        self.start_renderer(channel_key, run_id, false);
    }

    /// [`RenderHub::render`]; `continues_interrupted`: the render is one the
    /// surface's previous process left unfinished, and a reply its restart
    /// interrupted goes on by itself.
    fn start_renderer(&self, channel_key: &str, run_id: RunId, continues_interrupted: bool) {
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
                Some(current) if current.run == run_id => return,
                Some(current) => {
                    current.cancel.cancel();
                    current.turn.clone()
                }
                None => Arc::new(tokio::sync::Mutex::new(())),
            };
            running.insert(
                channel_key.to_string(),
                Running {
                    generation,
                    run: run_id.clone(),
                    cancel: cancel.clone(),
                    turn: turn.clone(),
                },
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
            let renderer = Renderer::new(
                &inner,
                &key,
                generation,
                sink,
                cancel,
                continues_interrupted,
            );
            if let Err(e) = renderer.run(run_id.clone()).await {
                tracing::warn!(surface = %inner.surface, channel = %key, run = %run_id, error = %e, "rendering failed");
            }
            let mut running = inner.running.lock().expect("render map poisoned");
            if running.get(&key).is_some_and(|r| r.generation == generation) {
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
                    self.start_renderer(&key, run.id, true);
                }
                Ok(None) => {
                    tracing::warn!(channel = %key, "unfinished render of a message without runs")
                }
                Err(e) => tracing::warn!(channel = %key, error = %e, "cannot resume a render"),
            }
        }
    }

    /// How this surface's people give commands, for core's answers that name one.
    pub fn command_forms(&self) -> CommandForms<'_> {
        CommandForms::of(&self.inner.command_prefix, &*self.inner.factory)
    }

    /// The core these renderers follow runs of.
    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
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

    /// Whether the binding's channel is read by the person writing only (see
    /// [`SinkFactory::is_private`]).
    pub async fn is_private(&self, channel_key: &str) -> bool {
        self.inner.factory.is_private(channel_key).await
    }

    /// The surface's private channel with `user` (see [`SinkFactory::private_sink`]).
    pub async fn private_sink(&self, user: &Identity) -> Result<Arc<dyn MessageSink>, SinkError> {
        self.inner.factory.private_sink(user).await
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
