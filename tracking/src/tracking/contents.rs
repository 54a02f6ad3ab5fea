//! What a workspace holds of experiments and runs, and deleting it all with the workspace.

use super::*;

impl Tracking {
    /// Experiment ids of a workspace with their names (without creating `Default`).
    fn workspace_experiments(&self, workspace: &str) -> TrackingResult<Vec<(String, String)>> {
        let prefix = format!("{workspace}/");
        Ok(self
            .records
            .scan_with_keys::<String>(EXPERIMENT_NAMES_TREE, &prefix)?
            .into_iter()
            .map(|(key, id)| (key[prefix.len()..].to_string(), id))
            .collect())
    }

    /// Deletes a run and everything recorded for it.
    fn delete_run_records(&self, run: &Run) -> TrackingResult<()> {
        for tree in [METRICS_TREE, LOGS_TREE] {
            for key in self.records.keys(tree, &format!("{}/", run.id))? {
                self.records.delete(tree, &key)?;
            }
        }
        self.records.delete(RUN_ACTIVE_TREE, &run.id)?;
        self.records.delete(RUN_QUEUE_TREE, &queue_key(run))?;
        self.records.delete(RUNS_TREE, &run.id)?;
        Ok(())
    }
}

impl shoal_store::workspace::WorkspaceContents for Tracking {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let (mut experiments, mut runs, mut active) = (0, 0, 0);
        for (name, id) in self.workspace_experiments(workspace)? {
            let run_ids = self.experiment_run_ids(&id)?;
            // The Default experiment appears on first look; empty, it holds nothing.
            if name != DEFAULT_EXPERIMENT || !run_ids.is_empty() {
                experiments += 1;
            }
            runs += run_ids.len();
            for run_id in run_ids {
                if let Some(run) = self.records.get::<Run>(RUNS_TREE, &run_id)? {
                    if !run.status.is_terminal() && run.compute != Compute::Tracked {
                        active += 1;
                    }
                }
            }
        }
        if active > 0 {
            return Err(shoal_store::WorkspaceError::Busy(format!(
                "workspace '{workspace}' has {active} queued or running runs; cancel them first"
            )));
        }
        Ok([
            shoal_store::held_count(experiments, "experiment"),
            shoal_store::held_count(runs, "run"),
        ]
        .into_iter()
        .flatten()
        .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        for (name, id) in self.workspace_experiments(workspace)? {
            for run_id in self.experiment_run_ids(&id)? {
                if let Some(run) = self.records.get::<Run>(RUNS_TREE, &run_id)? {
                    self.delete_run_records(&run)?;
                }
                self.records
                    .delete(EXPERIMENT_RUNS_TREE, &format!("{id}/{run_id}"))?;
            }
            for (key, _) in self
                .records
                .scan_with_keys::<i64>(EXPERIMENT_LOGGED_MODELS_TREE, &format!("{id}/"))?
            {
                if let Some((_, model_id)) = key.split_once('/') {
                    self.records.delete(LOGGED_MODELS_TREE, model_id)?;
                }
                self.records.delete(EXPERIMENT_LOGGED_MODELS_TREE, &key)?;
            }
            for key in self.records.keys(ARTIFACT_INDEX_TREE, &format!("{id}/"))? {
                self.records.delete(ARTIFACT_INDEX_TREE, &key)?;
            }
            self.records.delete(EXPERIMENTS_TREE, &id)?;
            self.records
                .delete(EXPERIMENT_NAMES_TREE, &format!("{workspace}/{name}"))?;
        }
        self.changed();
        Ok(())
    }
}
