//! How each chat surface's connection to its platform stands. A surface that cannot
//! reach its platform does not stop the server: it keeps retrying and reports here,
//! and `/readyz` (and the admin console) read it.

use super::Core;
use chorus_model::time::now_ms;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A surface's connection, as the surface last reported it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SurfaceState {
    /// Configured, its first connection not made yet.
    Starting,
    /// Connected to its platform: receiving and answering.
    Connected,
    /// Not connected (never yet, or lost): retrying. `error` says why, without secrets.
    Down { error: String },
}

/// One surface's state and since when it holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SurfaceStatus {
    /// The surface's name (`matrix`, `discord`, `slack`).
    pub surface: String,
    #[serde(flatten)]
    pub state: SurfaceState,
    /// When the surface entered this state (Unix milliseconds).
    pub since_ms: i64,
}

/// The states of this instance's surfaces, shared by the clones of [`Core`].
#[derive(Clone, Default)]
pub(crate) struct SurfaceBoard {
    states: Arc<Mutex<BTreeMap<String, SurfaceStatus>>>,
}

impl SurfaceBoard {
    /// Whether the state changed.
    fn set(&self, surface: &str, state: SurfaceState) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states.get(surface).is_some_and(|s| s.state == state) {
            return false;
        }
        states.insert(
            surface.to_string(),
            SurfaceStatus {
                surface: surface.to_string(),
                state,
                since_ms: now_ms(),
            },
        );
        true
    }

    fn all(&self) -> Vec<SurfaceStatus> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.values().cloned().collect()
    }
}

impl Core {
    /// Records how `surface`'s connection stands now (a repeated state keeps its
    /// `since_ms`). Logged at each change, so an operator sees a surface going down.
    pub fn report_surface(&self, surface: &str, state: SurfaceState) {
        if !self.surfaces.set(surface, state.clone()) {
            return;
        }
        let label = match &state {
            SurfaceState::Starting => "starting",
            SurfaceState::Connected => "connected",
            SurfaceState::Down { .. } => "down",
        };
        crate::telemetry::metrics::surface_state(surface, label);
        match state {
            SurfaceState::Starting => tracing::info!(surface, "surface starting"),
            SurfaceState::Connected => tracing::info!(surface, "surface connected"),
            SurfaceState::Down { error } => tracing::warn!(surface, %error, "surface down"),
        }
    }

    /// Samples what is measured on demand rather than as it happens, just before the
    /// metrics are rendered: the database pool, a trivial query's round trip and, when
    /// the journal is in Redis, a PING's. Each probe is bounded, so a dead database
    /// makes a scrape slow by at most that, never stuck.
    pub async fn sample_metrics(&self) {
        use crate::telemetry::metrics;
        const PROBE: std::time::Duration = std::time::Duration::from_secs(2);
        let stats = self.store.pool_stats();
        metrics::db_pool(stats.size, stats.idle, stats.max);
        let started = std::time::Instant::now();
        if let Ok(true) = tokio::time::timeout(PROBE, self.store.ping()).await {
            metrics::db_round_trip(started.elapsed());
        }
        if self.config.journal.redis_url.is_some() {
            let started = std::time::Instant::now();
            if let Ok(true) = tokio::time::timeout(PROBE, self.journal.ping()).await {
                metrics::redis_round_trip(started.elapsed());
            }
        }
    }

    /// Every configured surface of this instance with its state, by name.
    pub fn surface_states(&self) -> Vec<SurfaceStatus> {
        self.surfaces.all()
    }
}
