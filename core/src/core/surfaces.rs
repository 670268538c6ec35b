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
        match state {
            SurfaceState::Starting => tracing::info!(surface, "surface starting"),
            SurfaceState::Connected => tracing::info!(surface, "surface connected"),
            SurfaceState::Down { error } => tracing::warn!(surface, %error, "surface down"),
        }
    }

    /// Every configured surface of this instance with its state, by name.
    pub fn surface_states(&self) -> Vec<SurfaceStatus> {
        self.surfaces.all()
    }
}
