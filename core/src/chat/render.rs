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

use super::split::{close_open_fence, split_message};
use crate::core::{Core, CoreError};
use crate::ids::RunId;
use crate::journal::RunEvent;
use crate::store::{RenderState, Run, RunStatus};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A surface's limits for one message and its edits.
#[derive(Clone, Debug)]
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

/// How often the typing notice is renewed while waiting (platforms expire it).
const TYPING_RENEW: Duration = Duration::from_secs(3);
/// The least time between two saves of an unchanged set of parts.
const SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Attempts at an edit or post that must land (a new part, the final text).
const MUST_LAND_ATTEMPTS: u32 = 12;

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

/// What is on screen: one entry per posted part.
struct Screen {
    ids: Vec<String>,
    /// The text each part shows, `None` when unknown (posted by a previous process).
    shown: Vec<Option<String>>,
    edits: Vec<u32>,
}

/// The reply as it stands.
#[derive(Default)]
struct Reply {
    prefix: String,
    text: String,
    seq: u64,
    /// A tool being called right now (shown as a status line while it runs).
    tool: Option<String>,
}

impl Reply {
    fn full(&self) -> String {
        format!("{}{}", self.prefix, self.text)
    }
}

struct Renderer<'a> {
    hub: &'a HubInner,
    key: &'a str,
    sink: Arc<dyn MessageSink>,
    limits: SinkLimits,
    cancel: CancellationToken,
    screen: Screen,
    state: Option<RenderState>,
    last_save: Instant,
}

impl<'a> Renderer<'a> {
    fn new(
        hub: &'a HubInner,
        key: &'a str,
        sink: Arc<dyn MessageSink>,
        cancel: CancellationToken,
    ) -> Self {
        let limits = sink.limits();
        Self {
            hub,
            key,
            sink,
            limits,
            cancel,
            screen: Screen {
                ids: Vec::new(),
                shown: Vec::new(),
                edits: Vec::new(),
            },
            state: None,
            last_save: Instant::now(),
        }
    }

    async fn run(mut self, mut run_id: RunId) -> Result<(), CoreError> {
        let core = &self.hub.core;
        let first = core
            .store()
            .run(&run_id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        // The messages already showing this reply (a continuation, or a restart).
        let saved = core
            .store()
            .render_state(&self.hub.surface, self.key)
            .await?;
        let state = match saved {
            Some(s) if s.message_id == first.message_id => RenderState {
                run_id: run_id.clone(),
                finished: false,
                ..s
            },
            _ => RenderState {
                message_id: first.message_id.clone(),
                run_id: run_id.clone(),
                parts: Vec::new(),
                rendered_seq: 0,
                finished: false,
            },
        };
        self.screen.ids = state.parts.clone();
        self.screen.shown = vec![None; state.parts.len()];
        self.screen.edits = vec![0; state.parts.len()];
        self.state = Some(state);
        self.save(&[], true).await;
        let mut continued = false;
        loop {
            let Some((run, reply)) = self.follow(&run_id).await? else {
                return Ok(()); // cancelled: the state stays unfinished for the next process
            };
            let taken_over = core
                .store()
                .latest_run_of_message(&run.message_id)
                .await?
                .is_some_and(|latest| latest.id != run.id);
            if run.status == RunStatus::Interrupted
                && !continued
                && !taken_over
                && !self.cancel.is_cancelled()
            {
                // A restart or a dead instance cut it off: go on from its text, once.
                let account = core
                    .store()
                    .account(&run.account_id)
                    .await?
                    .ok_or(CoreError::NotFound("account"))?;
                match core.continue_run(&account, &run.id).await {
                    Ok(next) => {
                        tracing::info!(surface = %self.hub.surface, run = %run.id, next = %next, "continuing an interrupted reply");
                        continued = true;
                        run_id = next;
                        if let Some(state) = &mut self.state {
                            state.run_id = run_id.clone();
                            state.rendered_seq = 0;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(run = %run.id, error = %e, "cannot continue an interrupted reply")
                    }
                }
            }
            let ending = self.ending(&run);
            let text = if ending.is_empty() {
                reply.full()
            } else {
                format!("{}{ending}", close_open_fence(&reply.full()))
            };
            self.show_final(&text).await;
            if let Some(state) = &mut self.state {
                state.finished = true;
                state.rendered_seq = reply.seq;
            }
            self.save(&[], true).await;
            return Ok(());
        }
    }

    /// Follows `run_id` to its end, editing as text arrives. Returns the ended run and
    /// its reply, or `None` when cancelled.
    async fn follow(&mut self, run_id: &RunId) -> Result<Option<(Run, Reply)>, CoreError> {
        let core = &self.hub.core;
        let run = core
            .store()
            .run(run_id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        let account = core
            .store()
            .account(&run.account_id)
            .await?
            .ok_or(CoreError::NotFound("account"))?;
        let view = core.run_view(&account, run_id).await?;
        let mut reply = Reply {
            prefix: view.prefix,
            text: view.run.text.clone(),
            seq: view.seq,
            tool: None,
        };
        if !view.run.status.is_active() {
            return Ok(Some((view.run, reply)));
        }
        let mut events = core.follow_run(&account, run_id, view.seq).await?;
        let mut dirty = !reply.full().is_empty();
        let mut next_edit = Instant::now();
        let mut next_typing = Instant::now();
        loop {
            let waiting = reply.full().is_empty();
            if waiting && Instant::now() >= next_typing {
                let _ = self.sink.typing(true).await;
                next_typing = Instant::now() + TYPING_RENEW;
            }
            let wake = if dirty {
                next_edit
            } else if waiting {
                next_typing
            } else {
                Instant::now() + Duration::from_secs(3600)
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(None),
                entry = events.next() => match entry {
                    Some(Ok(entry)) => {
                        reply.seq = entry.seq;
                        match entry.event {
                            RunEvent::Started { prefix, .. } => reply.prefix = prefix,
                            RunEvent::Delta { text } => {
                                reply.text.push_str(&text);
                                reply.tool = None;
                            }
                            RunEvent::Snapshot { text } => reply.text = text,
                            RunEvent::ToolCall { name, .. } => reply.tool = Some(name),
                            RunEvent::ToolResult { .. } => reply.tool = None,
                            RunEvent::Finished { .. } => break,
                            _ => continue,
                        }
                        dirty = true;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(run = %run_id, error = %e, "journal read failed; reading again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        events = core.follow_run(&account, run_id, reply.seq).await?;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake), if dirty || waiting => {
                    if dirty {
                        let mut display = reply.full();
                        if let Some(tool) = &reply.tool {
                            display = close_open_fence(&display);
                            display.push_str(&format!("\n\n_🔧 using {tool}…_"));
                        }
                        if display.is_empty() {
                            dirty = false;
                            continue;
                        }
                        if nothing_posted(&self.screen) {
                            let _ = self.sink.typing(false).await;
                        }
                        match self.show_partial(&display).await {
                            Ok(()) => {
                                dirty = false;
                                next_edit = Instant::now() + self.limits.min_edit_interval;
                                if let Some(state) = &mut self.state {
                                    state.rendered_seq = reply.seq;
                                }
                                self.save(&[], false).await;
                            }
                            Err(retry_after) => next_edit = Instant::now() + retry_after,
                        }
                    }
                }
            }
        }
        // Ended: the store has the final status and text (the journal may have lost
        // the end of a run whose instance died).
        let run = core
            .store()
            .run(run_id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        if run.status.is_active() {
            // The journal ended without the run ending: follow it again, after a pause
            // so that a journal that keeps ending early is not read in a tight loop.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Box::pin(self.follow(run_id)).await;
        }
        reply.text = run.text.clone();
        Ok(Some((run, reply)))
    }

    /// How the reply ended, as a note after its text (nothing for a complete reply).
    fn ending(&self, run: &Run) -> String {
        let again = format!(
            "react ▶️ or send `{} continue` to go on",
            self.hub.command_prefix
        );
        match (run.status, run.finish_reason.as_deref()) {
            (RunStatus::Complete, Some("length")) => {
                format!("\n\n_✂️ Cut off at the length limit: {again}._")
            }
            (RunStatus::Complete, Some("max_tool_steps")) => {
                format!("\n\n_✂️ Stopped after the most tool steps allowed: {again}._")
            }
            (RunStatus::Complete, Some("content_filter")) => {
                "\n\n_⚠️ The provider's content filter ended this reply._".into()
            }
            (RunStatus::Complete, _) if run.text.is_empty() && run.prefix_len == 0 => {
                "_(empty reply)_".into()
            }
            (RunStatus::Complete, _) => String::new(),
            (RunStatus::Stopped, _) => format!("\n\n_⏹️ Stopped: {again}._"),
            (RunStatus::Interrupted, _) => format!("\n\n_⚠️ Interrupted: {again}._"),
            (RunStatus::Failed, _) => format!(
                "\n\n_⚠️ Failed: {}_",
                run.error.as_deref().unwrap_or("unknown error")
            ),
            (RunStatus::Queued | RunStatus::Streaming, _) => String::new(),
        }
    }

    /// An intermediate edit: the parts that changed, skipping edits of a message past
    /// its cap (a full part still gets its final edit). On a rate limit, the time to
    /// wait before trying again.
    async fn show_partial(&mut self, text: &str) -> Result<(), Duration> {
        let parts = split_message(text, self.limits.max_bytes);
        let cap = self.limits.max_edits_per_message.max(1);
        for (i, part) in parts.iter().enumerate() {
            let full = i + 1 < parts.len();
            if i < self.screen.ids.len() {
                if self.screen.shown[i].as_deref() == Some(part.as_str()) {
                    continue;
                }
                // Keep the last edit of the cap for the final text.
                if !full && self.screen.edits[i] + 1 >= cap {
                    continue;
                }
                match self.sink.edit(&self.screen.ids[i], part).await {
                    Ok(()) => self.edited(i, part),
                    Err(SinkError::RateLimited { retry_after }) => {
                        tracing::info!(surface = %self.hub.surface, retry_after_ms = retry_after.as_millis() as u64, "rate limited; backing off");
                        return Err(retry_after);
                    }
                    Err(SinkError::Failed(e)) => {
                        tracing::warn!(surface = %self.hub.surface, error = %e, "edit failed");
                    }
                }
            } else {
                match self.sink.post(part).await {
                    Ok(id) => self.posted(id, part).await,
                    Err(SinkError::RateLimited { retry_after }) => {
                        tracing::info!(surface = %self.hub.surface, retry_after_ms = retry_after.as_millis() as u64, "rate limited; backing off");
                        return Err(retry_after);
                    }
                    Err(SinkError::Failed(e)) => {
                        tracing::warn!(surface = %self.hub.surface, error = %e, "post failed");
                        return Err(Duration::from_secs(2));
                    }
                }
            }
        }
        Ok(())
    }

    /// The final text: every part that differs is edited (or posted), retrying
    /// through rate limits, whatever the edit cap.
    async fn show_final(&mut self, text: &str) {
        let _ = self.sink.typing(false).await;
        let parts = split_message(text, self.limits.max_bytes);
        for (i, part) in parts.iter().enumerate() {
            if self.screen.shown.get(i).and_then(|s| s.as_deref()) == Some(part.as_str()) {
                continue;
            }
            for attempt in 1..=MUST_LAND_ATTEMPTS {
                let result = match self.screen.ids.get(i) {
                    Some(id) => self.sink.edit(id, part).await.map(|()| None),
                    None => self.sink.post(part).await.map(Some),
                };
                match result {
                    Ok(None) => {
                        self.edited(i, part);
                        break;
                    }
                    Ok(Some(id)) => {
                        self.posted(id, part).await;
                        break;
                    }
                    Err(SinkError::RateLimited { retry_after }) => {
                        tracing::info!(surface = %self.hub.surface, retry_after_ms = retry_after.as_millis() as u64, "rate limited; backing off");
                        tokio::time::sleep(retry_after).await;
                    }
                    Err(SinkError::Failed(e)) => {
                        tracing::warn!(surface = %self.hub.surface, error = %e, attempt, "final edit failed");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                }
            }
        }
        // Parts a longer earlier text needed and the final text does not (a shorter
        // snapshot after a restart): emptied rather than left stale.
        for i in parts.len()..self.screen.ids.len() {
            if self.screen.shown[i].as_deref() != Some("…") {
                let id = self.screen.ids[i].clone();
                if self.sink.edit(&id, "…").await.is_ok() {
                    self.edited(i, "…");
                }
            }
        }
    }

    fn edited(&mut self, i: usize, text: &str) {
        self.screen.shown[i] = Some(text.to_string());
        self.screen.edits[i] += 1;
    }

    async fn posted(&mut self, id: String, text: &str) {
        self.screen.ids.push(id.clone());
        self.screen.shown.push(Some(text.to_string()));
        self.screen.edits.push(0);
        if let Some(state) = &mut self.state {
            state.parts = self.screen.ids.clone();
        }
        // A new part is saved at once: a restart must edit it, not post another.
        self.save(&[id], true).await;
    }

    /// Saves the render state: always when `now`, else at most every few seconds.
    async fn save(&mut self, new_parts: &[String], now: bool) {
        if !now && self.last_save.elapsed() < SAVE_INTERVAL {
            return;
        }
        let Some(state) = &self.state else { return };
        match self
            .hub
            .core
            .store()
            .save_render_state(&self.hub.surface, self.key, state, new_parts)
            .await
        {
            Ok(()) => self.last_save = Instant::now(),
            Err(e) => {
                tracing::warn!(surface = %self.hub.surface, channel = %self.key, error = %e, "cannot save the render state")
            }
        }
    }
}

/// Whether `continue` can go on with a run: stopped, interrupted, failed, or cut off
/// by the length or tool step limit.
pub fn is_continuable(run: &Run) -> bool {
    match run.status {
        RunStatus::Stopped | RunStatus::Interrupted | RunStatus::Failed => true,
        RunStatus::Complete => matches!(
            run.finish_reason.as_deref(),
            Some("length" | "max_tool_steps")
        ),
        RunStatus::Queued | RunStatus::Streaming => false,
    }
}

/// Whether nothing is on screen yet (the typing notice may be showing).
fn nothing_posted(screen: &Screen) -> bool {
    screen.ids.is_empty()
}
