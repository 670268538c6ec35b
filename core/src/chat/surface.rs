//! One lifecycle for every chat surface: a [`SurfaceHandle`] owns the surface's tasks
//! (its connection loop, the handlers of its events) and its [`RenderHub`], so the
//! binary starts and stops Matrix, Discord and Slack the same way.

use super::RenderHub;
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
