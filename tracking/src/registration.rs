//! Model versions from run artifacts: the one path by which a file a run (or an MLflow
//! logged model) stored becomes a registry version, for the gRPC `RegisterFromRun`, MLflow's
//! `model-versions/create`, built-in trainer runs, remote workers' runs and sweeps alike.
//!
//! Lineage is recorded on both sides: `shoal.run` and `shoal.dataset` tags on the version,
//! `name@version` in the run's outputs. A built-in run's model also gets its dataset's
//! profile over the trained features as its drift baseline; a script's model gets none (the
//! hub does not know which columns it reads).

use std::collections::BTreeMap;

use shoal_registry::{ModelVersion, NewVersion};

use crate::error::TrackingResult;
use crate::jobs::{builtin, Jobs};
use crate::tracking::{Job, Run};

/// A version to register from a stored artifact.
#[derive(Debug, Clone)]
pub struct ArtifactVersion {
    pub workspace: String,
    /// The model's name in the registry.
    pub name: String,
    pub description: String,
    /// Tags of the caller's own (MLflow's source tags); lineage tags are added.
    pub tags: BTreeMap<String, String>,
    /// The artifact's full index path (`{experiment}/{run}/artifacts/outputs/model.onnx`).
    pub artifact_path: String,
    /// The run the file comes from, if any.
    pub run: Option<Run>,
}

impl Jobs {
    /// Registers the artifact as the next version of its model, with lineage and, for a
    /// built-in run, the baseline. Returns the version as it stands after all of that.
    ///
    /// # Errors
    /// `NotFound` for the artifact or the run's dataset; what the registry refuses (the
    /// model, the name, the baseline).
    pub async fn register_artifact(&self, new: ArtifactVersion) -> TrackingResult<ModelVersion> {
        let entry = self.tracking().artifact(&new.artifact_path)?;
        let mut tags = new.tags;
        if let Some(run) = &new.run {
            tags.insert("shoal.run".to_string(), run.id.clone());
            if let Some(dataset) = run.inputs.first() {
                tags.insert("shoal.dataset".to_string(), dataset.clone());
            }
        }
        let registry = self.registry();
        let mut version = registry
            .register(
                NewVersion {
                    workspace: new.workspace.clone(),
                    name: new.name.clone(),
                    description: new.description,
                    tags,
                },
                entry.digest,
                entry.size_bytes,
            )
            .await?;
        let Some(run) = &new.run else {
            return Ok(version);
        };
        let features = self.baseline_features(run)?;
        if let (Some(dataset), false) = (run.inputs.first(), features.is_empty()) {
            let dataset = self.datasets().resolve(&run.workspace, dataset)?;
            version = registry
                .set_baseline(
                    &new.workspace,
                    &new.name,
                    &version.version.to_string(),
                    "",
                    features,
                    self.datasets().local_path(&dataset).await?,
                )
                .await?;
        }
        let reference = format!("{}@{}", version.model, version.version);
        self.tracking().update_run(&run.id, |r| {
            if !r.outputs.contains(&reference) {
                r.outputs.push(reference.clone());
            }
            Ok(())
        })?;
        Ok(version)
    }

    /// The columns a run's model reads, when the hub knows them: a built-in job's features
    /// (every column but the target when none were named); none for a script.
    ///
    /// # Errors
    /// `NotFound` for a built-in job's dataset.
    pub fn baseline_features(&self, run: &Run) -> TrackingResult<Vec<String>> {
        match &run.job {
            Some(Job::Builtin(job)) => builtin::job_features(self, run, job),
            _ => Ok(Vec::new()),
        }
    }

    /// Registers a run's `outputs/…` file (or any artifact path of the run) as `name`, with
    /// the description `from run …` when none is given.
    ///
    /// # Errors
    /// As [`Jobs::register_artifact`].
    pub async fn register_run_output(
        &self,
        run: &Run,
        path: &str,
        name: &str,
        description: &str,
    ) -> TrackingResult<ModelVersion> {
        let description = if description.is_empty() {
            format!("from run {}", run.id)
        } else {
            description.to_string()
        };
        self.register_artifact(ArtifactVersion {
            workspace: run.workspace.clone(),
            name: name.to_string(),
            description,
            tags: BTreeMap::new(),
            artifact_path: format!("{}/{}", run.artifact_root(), path.trim_start_matches("./")),
            run: Some(run.clone()),
        })
        .await
    }
}
