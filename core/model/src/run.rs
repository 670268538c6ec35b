//! Where a run stands: the one status vocabulary of the store, the engine, the API
//! and every surface.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Streaming,
    Complete,
    Stopped,
    Interrupted,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Streaming => "streaming",
            RunStatus::Complete => "complete",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => RunStatus::Queued,
            "streaming" => RunStatus::Streaming,
            "complete" => RunStatus::Complete,
            "stopped" => RunStatus::Stopped,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Failed,
        }
    }

    /// Whether the run is still going (someone holds, or held, its lease).
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Streaming)
    }
}
