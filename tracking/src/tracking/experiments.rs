//! Experiments: named groups of runs per workspace, with numeric hub-wide ids (MLflow's
//! clients expect them) and each workspace's `Default` experiment.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub lifecycle: Lifecycle,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Experiment {
    /// Where the experiment's run artifacts live, as MLflow clients address them.
    pub fn artifact_location(&self) -> String {
        format!("mlflow-artifacts:/{}", self.id)
    }
}

fn check_experiment_name(name: &str) -> TrackingResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.contains('/') {
        return Err(TrackingError::invalid(format!(
            "experiment name '{name}' must be 1 to 200 characters without '/'"
        )));
    }
    Ok(())
}

impl Tracking {
    fn next_experiment_id(&self) -> TrackingResult<String> {
        let n =
            self.records
                .update::<u64, TrackingError>(COUNTERS_TREE, "experiment", |c| {
                    Ok(c.unwrap_or(0) + 1)
                })?;
        Ok(n.to_string())
    }

    /// Creates an experiment.
    ///
    /// # Errors
    /// `AlreadyExists` for a taken name, `InvalidArgument` for a bad one.
    pub fn create_experiment(
        &self,
        workspace: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> TrackingResult<Experiment> {
        self.workspaces.require(workspace)?;
        check_experiment_name(name)?;
        let name_key = format!("{workspace}/{name}");
        if self
            .records
            .get::<String>(EXPERIMENT_NAMES_TREE, &name_key)?
            .is_some()
        {
            return Err(TrackingError::already_exists("experiment", name));
        }
        // The default workspace's Default experiment is MLflow's experiment 0.
        let id = if workspace == shoal_store::workspace::DEFAULT_WORKSPACE
            && name == DEFAULT_EXPERIMENT
        {
            "0".to_string()
        } else {
            self.next_experiment_id()?
        };
        if !self
            .records
            .insert_new(EXPERIMENT_NAMES_TREE, &name_key, &id)?
        {
            return Err(TrackingError::already_exists("experiment", name));
        }
        let now = shoal_store::now_ms();
        let experiment = Experiment {
            id: id.clone(),
            workspace: workspace.into(),
            name: name.into(),
            lifecycle: Lifecycle::Active,
            tags,
            created_ms: now,
            updated_ms: now,
        };
        self.records.put(EXPERIMENTS_TREE, &id, &experiment)?;
        tracing::info!(%workspace, experiment = %name, %id, "experiment created");
        Ok(experiment)
    }

    /// The experiment of that name, created if it does not exist (what `run submit
    /// --experiment occ` does).
    ///
    /// # Errors
    /// Storage errors; `InvalidArgument` for a bad name.
    pub fn ensure_experiment(&self, workspace: &str, name: &str) -> TrackingResult<Experiment> {
        match self.experiment_by_name(workspace, name) {
            Ok(e) => Ok(e),
            Err(TrackingError::NotFound { .. }) => {
                match self.create_experiment(workspace, name, BTreeMap::new()) {
                    Err(TrackingError::AlreadyExists { .. }) => {
                        self.experiment_by_name(workspace, name)
                    }
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// # Errors
    /// `NotFound`.
    pub fn experiment_by_name(&self, workspace: &str, name: &str) -> TrackingResult<Experiment> {
        self.workspaces.require(workspace)?;
        let id: Option<String> = self
            .records
            .get(EXPERIMENT_NAMES_TREE, &format!("{workspace}/{name}"))?;
        match id {
            Some(id) => self.experiment(&id),
            None if name == DEFAULT_EXPERIMENT => self.ensure_default(workspace),
            None => Err(TrackingError::not_found("experiment", name)),
        }
    }

    fn ensure_default(&self, workspace: &str) -> TrackingResult<Experiment> {
        match self.create_experiment(workspace, DEFAULT_EXPERIMENT, BTreeMap::new()) {
            Err(TrackingError::AlreadyExists { .. }) => {
                let id: String = self
                    .records
                    .get(
                        EXPERIMENT_NAMES_TREE,
                        &format!("{workspace}/{DEFAULT_EXPERIMENT}"),
                    )?
                    .ok_or_else(|| TrackingError::not_found("experiment", DEFAULT_EXPERIMENT))?;
                self.experiment(&id)
            }
            other => other,
        }
    }

    /// An experiment by id.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn experiment(&self, id: &str) -> TrackingResult<Experiment> {
        self.records
            .get(EXPERIMENTS_TREE, id)?
            .ok_or_else(|| TrackingError::not_found("experiment", id))
    }

    /// An experiment by id within a workspace; `0` is the workspace's Default experiment.
    ///
    /// # Errors
    /// `NotFound`, also for an experiment of another workspace.
    pub fn experiment_in(&self, workspace: &str, id: &str) -> TrackingResult<Experiment> {
        if id == "0" {
            return self.experiment_by_name(workspace, DEFAULT_EXPERIMENT);
        }
        let experiment = self.experiment(id)?;
        if experiment.workspace != workspace {
            return Err(TrackingError::not_found("experiment", id));
        }
        Ok(experiment)
    }

    /// Every experiment of a workspace (the Default one included), by id.
    ///
    /// # Errors
    /// `NotFound` for the workspace.
    pub fn experiments(
        &self,
        workspace: &str,
        include_deleted: bool,
    ) -> TrackingResult<Vec<Experiment>> {
        self.ensure_default(workspace)?;
        let ids: Vec<String> = self
            .records
            .scan(EXPERIMENT_NAMES_TREE, &format!("{workspace}/"))?;
        let mut experiments = Vec::new();
        for id in ids {
            let experiment = self.experiment(&id)?;
            if include_deleted || experiment.lifecycle == Lifecycle::Active {
                experiments.push(experiment);
            }
        }
        experiments.sort_by_key(|e| e.id.parse::<u64>().unwrap_or(u64::MAX));
        Ok(experiments)
    }

    /// Renames, tags, deletes or restores an experiment.
    ///
    /// # Errors
    /// `NotFound`; `AlreadyExists` when renaming onto a taken name.
    pub fn update_experiment(
        &self,
        id: &str,
        change: impl Fn(&mut Experiment),
    ) -> TrackingResult<Experiment> {
        let before = self.experiment(id)?;
        let after =
            self.records
                .update::<Experiment, TrackingError>(EXPERIMENTS_TREE, id, |current| {
                    let mut e =
                        current.ok_or_else(|| TrackingError::not_found("experiment", id))?;
                    change(&mut e);
                    e.updated_ms = shoal_store::now_ms();
                    Ok(e)
                })?;
        if before.name != after.name {
            check_experiment_name(&after.name)?;
            let new_key = format!("{}/{}", after.workspace, after.name);
            if !self
                .records
                .insert_new(EXPERIMENT_NAMES_TREE, &new_key, &after.id)?
            {
                self.records.put(EXPERIMENTS_TREE, id, &before)?;
                return Err(TrackingError::already_exists("experiment", after.name));
            }
            self.records.delete(
                EXPERIMENT_NAMES_TREE,
                &format!("{}/{}", before.workspace, before.name),
            )?;
        }
        Ok(after)
    }

    // === runs ===
}
