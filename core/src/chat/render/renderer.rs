//! One renderer: follows a run to its end and keeps the binding's platform messages
//! in step with it (intermediate edits, new parts, the final text), saving what is on
//! screen so that a restarted process can finish it.

use super::{HubInner, MessageSink, SinkError, SinkLimits};
use crate::chat::split::{close_open_fence, split_message};
use crate::core::CoreError;
use crate::journal::RunEvent;
use chorus_model::ids::RunId;
use chorus_store::{RenderState, Run, RunStatus};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the typing notice is renewed while waiting (platforms expire it).
const TYPING_RENEW: Duration = Duration::from_secs(3);
/// The least time between two saves of an unchanged set of parts.
const SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Attempts at an edit or post that must land (a new part, the final text).
const MUST_LAND_ATTEMPTS: u32 = 12;

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

pub(super) struct Renderer<'a> {
    hub: &'a HubInner,
    key: &'a str,
    /// Which renderer of the binding this is (see `HubInner::now_following`).
    generation: u64,
    sink: Arc<dyn MessageSink>,
    limits: SinkLimits,
    cancel: CancellationToken,
    screen: Screen,
    state: Option<RenderState>,
    last_save: Instant,
    /// Until when the platform asked us to wait (a rate limit): the final edit waits
    /// for it too.
    wait_until: Option<Instant>,
    /// Whether an interrupted reply is continued by itself (once): only when this
    /// renderer picks up a render the surface's previous process left unfinished.
    continues_interrupted: bool,
}

impl<'a> Renderer<'a> {
    pub(super) fn new(
        hub: &'a HubInner,
        key: &'a str,
        generation: u64,
        sink: Arc<dyn MessageSink>,
        cancel: CancellationToken,
        continues_interrupted: bool,
    ) -> Self {
        let limits = sink.limits();
        Self {
            hub,
            key,
            generation,
            sink,
            limits,
            cancel,
            continues_interrupted,
            screen: Screen {
                ids: Vec::new(),
                shown: Vec::new(),
                edits: Vec::new(),
            },
            state: None,
            last_save: Instant::now(),
            wait_until: None,
        }
    }

    pub(super) async fn run(mut self, mut run_id: RunId) -> Result<(), CoreError> {
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
                && self.continues_interrupted
                && !continued
                && !taken_over
                && !self.cancel.is_cancelled()
            {
                // This surface's own restart cut it off under its reader's eyes: go on
                // from its text, once. A reply brought here or followed from elsewhere
                // when its instance died waits for Continue, as on the web.
                let account = core
                    .store()
                    .account(&run.account_id)
                    .await?
                    .ok_or(CoreError::NotFound("account"))?;
                let surface = crate::telemetry::metrics::surface_label(&self.hub.surface);
                match core.continue_run_on(&account, &run.id, surface).await {
                    Ok(next) => {
                        tracing::info!(surface = %self.hub.surface, run = %run.id, next = %next, "continuing an interrupted reply");
                        continued = true;
                        self.hub.now_following(self.key, self.generation, &next);
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
            self.announce_end(&run).await;
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
        // Nothing is on screen yet: the typing notice goes first, even when the run has
        // words already (a renderer that attaches late), and is cleared before the first
        // post below. So the notice always precedes the reply, whichever comes first.
        if nothing_posted(&self.screen) {
            let _ = self.sink.typing(true).await;
            next_typing = Instant::now() + TYPING_RENEW;
        }
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
        let again = self.hub.factory.continue_hint(&self.hub.command_prefix);
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
                        self.backing_off(retry_after);
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
                        self.backing_off(retry_after);
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
        self.wait_out_rate_limit().await;
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
                        self.backing_off(retry_after);
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

    /// Tells the sink the reply ended (its buttons change), retrying through rate
    /// limits like a final edit.
    async fn announce_end(&mut self, run: &Run) {
        let parts: Vec<(String, String)> = self
            .screen
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let shown = self.screen.shown.get(i).cloned().flatten();
                (id.clone(), shown.unwrap_or_default())
            })
            .collect();
        if parts.is_empty() {
            return;
        }
        let continuable = run.is_continuable();
        for attempt in 1..=MUST_LAND_ATTEMPTS {
            match self.sink.ended(&parts, continuable).await {
                Ok(()) => return,
                Err(SinkError::RateLimited { retry_after }) => {
                    self.backing_off(retry_after);
                    tokio::time::sleep(retry_after).await;
                }
                Err(SinkError::Failed(e)) => {
                    tracing::warn!(surface = %self.hub.surface, error = %e, attempt, "cannot show the ended reply's controls");
                    return;
                }
            }
        }
    }

    /// Sleeps until a rate limit the platform asked for is over.
    async fn wait_out_rate_limit(&mut self) {
        if let Some(until) = self.wait_until.take() {
            tokio::time::sleep_until(until).await;
        }
    }

    fn backing_off(&mut self, retry_after: Duration) {
        self.wait_until = Some(Instant::now() + retry_after);
        crate::telemetry::metrics::rate_limit_wait(&self.hub.surface, retry_after);
        tracing::info!(surface = %self.hub.surface, retry_after_ms = retry_after.as_millis() as u64, "rate limited; backing off");
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

/// Whether nothing is on screen yet (the typing notice may be showing).
fn nothing_posted(screen: &Screen) -> bool {
    screen.ids.is_empty()
}
