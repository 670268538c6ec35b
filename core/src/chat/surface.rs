//! One lifecycle for every chat surface: a [`SurfaceHandle`] owns the surface's tasks
//! (its connection loop, the handlers of its events) and its [`RenderHub`], so the
//! binary starts and stops Matrix, Discord and Slack the same way. A surface is
//! started under [`supervise_surface`], so a platform that cannot be reached at start
//! does not stop the server: the start is retried with back-off while `/readyz` says
//! the surface is down.

use super::RenderHub;
use crate::{Core, SurfaceState};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long [`SurfaceHandle::shutdown`] lets the surface's tasks end on their own
/// (a handler finishing its reply) before it drops them.
const TASK_GRACE: Duration = Duration::from_secs(5);

/// A running surface: its name, its tasks and its renderers. Clones share them; the
/// surface keeps one to spawn its handlers, the binary keeps one to shut it down.
#[derive(Clone)]
pub struct SurfaceHandle {
    name: Arc<str>,
    hub: RenderHub,
    tasks: TaskTracker,
    /// Cancelled when the surface must stop receiving.
    receiving: CancellationToken,
    /// Cancelled when its tasks' grace is over: they are dropped.
    abort: CancellationToken,
}

impl SurfaceHandle {
    /// The handle of the surface whose renderers are `hub` (named as the hub's surface).
    pub fn new(hub: RenderHub) -> Self {
        Self {
            name: hub.surface().into(),
            hub,
            tasks: TaskTracker::new(),
            receiving: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }

    /// The surface's name (`matrix`, `discord`, `slack`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The surface's renderers.
    pub fn hub(&self) -> &RenderHub {
        &self.hub
    }

    /// Reports how the surface's connection stands (for `/readyz`): a connection loop
    /// reports `Down` when it loses its platform and `Connected` when it is back.
    pub fn report(&self, state: SurfaceState) {
        self.hub.core().report_surface(&self.name, state);
    }

    /// Cancelled when the surface must stop receiving: its connection loop watches it
    /// and returns.
    pub fn stopping(&self) -> CancellationToken {
        self.receiving.clone()
    }

    /// Runs `task` on the surface's tracker: [`SurfaceHandle::shutdown`] waits for it
    /// (a few seconds at most, then drops it). Spawned after the shutdown began, it
    /// does not run.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.receiving.is_cancelled() {
            return;
        }
        let abort = self.abort.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Stops the surface: it stops receiving, its tasks end (or are dropped after a
    /// grace), then its renderers stop with their state unfinished, so the next start
    /// resumes them. Call before the core interrupts its runs.
    pub async fn shutdown(&self) {
        self.receiving.cancel();
        self.tasks.close();
        if tokio::time::timeout(TASK_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(surface = %self.name, "surface tasks still running after {TASK_GRACE:?}; dropping them");
            self.abort.cancel();
            self.tasks.wait().await;
        }
        self.hub.shutdown().await;
    }
}

/// The first wait after a failed start; it doubles up to [`MAX_START_BACKOFF`].
const FIRST_START_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two failed starts.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// A surface started in the background by [`supervise_surface`]: retrying until its
/// start succeeds, then running.
pub struct SupervisedSurface {
    name: String,
    stop: CancellationToken,
    started: Arc<std::sync::Mutex<Option<SurfaceHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a surface in the background: `start` connects to the platform and returns
/// the running surface, or an error saying why it could not (the homeserver or the
/// gateway unreachable, a refused token). A failed start is reported as
/// [`SurfaceState::Down`] and tried again after a back-off (1 s, doubling to 30 s), so
/// the rest of the server serves meanwhile.
pub fn supervise_surface<F, Fut, E>(core: &Core, name: &str, mut start: F) -> SupervisedSurface
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<SurfaceHandle, E>> + Send,
    E: std::fmt::Display + Send,
{
    core.report_surface(name, SurfaceState::Starting);
    let stop = CancellationToken::new();
    let started = Arc::new(std::sync::Mutex::new(None));
    let task = {
        let (core, name, stop, started) = (
            core.clone(),
            name.to_string(),
            stop.clone(),
            started.clone(),
        );
        tokio::spawn(async move {
            let mut backoff = FIRST_START_BACKOFF;
            loop {
                // A shutdown abandons a start under way (its waits may be long).
                let attempt = tokio::select! {
                    _ = stop.cancelled() => return,
                    attempt = start() => attempt,
                };
                match attempt {
                    Ok(surface) => {
                        surface.report(SurfaceState::Connected);
                        *started.lock().unwrap_or_else(|e| e.into_inner()) = Some(surface);
                        return;
                    }
                    Err(e) => {
                        let error = e.to_string();
                        tracing::warn!(surface = %name, %error, retry_in = ?backoff, "surface could not start");
                        core.report_surface(&name, SurfaceState::Down { error });
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_START_BACKOFF);
            }
        })
    };
    SupervisedSurface {
        name: name.to_string(),
        stop,
        started,
        task,
    }
}

impl SupervisedSurface {
    /// The surface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops retrying and, if the surface runs, shuts it down ([`SurfaceHandle::shutdown`]).
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(surface = %self.name, error = %e, "surface supervisor ended badly");
        }
        let surface = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(surface) = surface {
            surface.shutdown().await;
        }
    }
}
