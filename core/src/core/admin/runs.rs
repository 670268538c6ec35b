//! An admin's view of runs on every instance: the list (live and recent, filtered),
//! one run with its text, and stopping any run.

use super::Admin;
use crate::core::{Core, CoreError, RunView};
use chorus_model::ids::RunId;
use chorus_store::{Actor, AuditKind, Change, RunFilter, RunListing};
use serde_json::json;

impl Core {
    /// Runs matching `filter`, newest first.
    pub async fn admin_runs(
        &self,
        _: &Admin,
        filter: &RunFilter,
    ) -> Result<Vec<RunListing>, CoreError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// Any account's run with its text so far.
    pub async fn admin_run(&self, _: &Admin, id: &RunId) -> Result<RunView, CoreError> {
        let run = self
            .store
            .run(id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        let owner = self
            .store
            .account(&run.account_id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        self.run_view(&owner, id).await
    }

    /// Stops any account's run, wherever it executes; the stop is audited.
    pub async fn admin_stop_run(&self, admin: &Admin, id: &RunId) -> Result<(), CoreError> {
        let run = self
            .store
            .run(id)
            .await?
            .ok_or(CoreError::NotFound("run"))?;
        if run.status.is_active() && !self.engine.stop_local(id) {
            self.store.request_stop(id).await?;
        }
        let actor: Actor = admin.actor();
        self.store
            .record_event(&Change {
                kind: AuditKind::Admin,
                actor: &actor,
                action: "stop_run",
                object_type: "run",
                object_id: Some(id.as_str()),
                before: json!({"status": run.status, "account_id": run.account_id.as_str()}),
                after: json!({"stop_requested": run.status.is_active()}),
            })
            .await?;
        Ok(())
    }
}
