//! The scheduler's indexes: queued runs by compute target and age, and runs an executor
//! holds, kept in step with every status change so nothing scans every run.

use super::*;

/// A run's key in the queue index: by target, then age.
pub(super) fn queue_key(run: &Run) -> String {
    format!(
        "{}/{:016}/{}",
        run.compute.as_str(),
        run.created_ms.max(0),
        run.id
    )
}

impl Tracking {
    /// Keeps the queue and active-run indexes in step with a run's status.
    pub(super) fn reindex(&self, run: &Run) -> TrackingResult<()> {
        let queue_key = queue_key(run);
        if run.status == RunStatus::Queued {
            self.records.put_bytes(RUN_QUEUE_TREE, &queue_key, b"")?;
        } else {
            self.records.delete(RUN_QUEUE_TREE, &queue_key)?;
        }
        if run.status == RunStatus::Running && run.executor.is_some() {
            self.records.put_bytes(RUN_ACTIVE_TREE, &run.id, b"")?;
        } else {
            self.records.delete(RUN_ACTIVE_TREE, &run.id)?;
        }
        Ok(())
    }

    /// Runs waiting for an executor on a compute target, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn queued_runs(&self, compute: Compute) -> TrackingResult<Vec<Run>> {
        let mut runs = Vec::new();
        for key in self
            .records
            .keys(RUN_QUEUE_TREE, &format!("{}/", compute.as_str()))?
        {
            let Some((_, id)) = key.rsplit_once('/') else {
                continue;
            };
            if let Some(run) = self.records.get::<Run>(RUNS_TREE, id)? {
                if run.status == RunStatus::Queued {
                    runs.push(run);
                }
            }
        }
        Ok(runs)
    }

    /// Runs an executor holds now.
    ///
    /// # Errors
    /// Storage errors.
    pub fn running_runs(&self) -> TrackingResult<Vec<Run>> {
        let mut runs = Vec::new();
        for id in self.records.keys(RUN_ACTIVE_TREE, "")? {
            if let Some(run) = self.records.get::<Run>(RUNS_TREE, &id)? {
                if run.status == RunStatus::Running && run.executor.is_some() {
                    runs.push(run);
                }
            }
        }
        Ok(runs)
    }

    // === artifacts ===
}
