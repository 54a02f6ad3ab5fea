//! Runs: their records, statuses and compute targets, params, tags, lifecycle, and search.

use super::*;

/// Where a run is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Canceled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// MLflow's name for the status (`RunStatus` in its protocol).
    pub fn mlflow_name(self) -> &'static str {
        match self {
            RunStatus::Queued => "SCHEDULED",
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Canceled => "KILLED",
        }
    }

    /// Parses Shoal's or MLflow's name, in any case.
    pub fn parse(name: &str) -> Option<RunStatus> {
        Some(match name.to_ascii_lowercase().as_str() {
            "queued" | "scheduled" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "completed" | "finished" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "canceled" | "cancelled" | "killed" => RunStatus::Canceled,
            _ => return None,
        })
    }
}

/// Where a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compute {
    /// A subprocess (or, for built-in trainers, a thread) on the hub host.
    Local,
    /// Any remote worker whose labels include the run's.
    Worker,
    /// Nothing: a client (such as an MLflow script) drives the run and reports into it.
    Tracked,
}

impl Compute {
    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Local => "local",
            Compute::Worker => "worker",
            Compute::Tracked => "tracked",
        }
    }

    /// # Errors
    /// `InvalidArgument` naming the accepted targets.
    pub fn parse(name: &str) -> TrackingResult<Compute> {
        match name {
            "" | "local" => Ok(Compute::Local),
            "worker" | "remote" => Ok(Compute::Worker),
            other => Err(TrackingError::invalid(format!(
                "unknown compute target '{other}'; use 'local' or 'worker'"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub workspace: String,
    pub experiment_id: String,
    pub name: String,
    pub status: RunStatus,
    pub lifecycle: Lifecycle,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The latest point of each metric (greatest step, then timestamp, as MLflow orders them).
    pub metrics: BTreeMap<String, MetricPoint>,
    pub compute: Compute,
    /// Labels a worker must carry to take the run.
    pub labels: Vec<String>,
    /// Who runs it now or ran it: `local` or a worker id.
    pub executor: Option<String>,
    /// Last sign of life from the executor, for the heartbeat timeout.
    pub heartbeat_ms: Option<i64>,
    pub job: Option<Job>,
    pub parent_run_id: Option<String>,
    pub sweep_id: Option<String>,
    /// Dataset versions read (`sensors@1`).
    pub inputs: Vec<String>,
    /// Model versions written (`occupancy@3`).
    pub outputs: Vec<String>,
    pub exit_code: Option<i32>,
    /// Why the run failed or was canceled.
    pub error: Option<String>,
    /// The last lines of a failed run's log.
    pub log_tail: Vec<String>,
    /// Lines in the run's log so far.
    pub log_lines: u64,
    /// Set when someone asked to cancel a run that an executor is running.
    pub cancel_requested: bool,
    pub user: String,
}

impl Run {
    /// The run's artifact root, as MLflow clients address it.
    pub fn artifact_uri(&self) -> String {
        format!("mlflow-artifacts:/{}", self.artifact_root())
    }

    /// The run's artifact root as a key prefix: `{experiment}/{run}/artifacts`.
    pub fn artifact_root(&self) -> String {
        format!("{}/{}/artifacts", self.experiment_id, self.id)
    }
}

/// What a new run is created with.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub workspace: String,
    pub experiment_id: String,
    pub name: Option<String>,
    pub status: RunStatus,
    pub start_ms: Option<i64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub compute: Compute,
    pub labels: Vec<String>,
    pub job: Option<Job>,
    pub parent_run_id: Option<String>,
    pub sweep_id: Option<String>,
    pub inputs: Vec<String>,
    pub user: String,
}

impl NewRun {
    /// A run a client drives itself (the MLflow API's `runs/create`).
    pub fn tracked(workspace: &str, experiment_id: &str) -> NewRun {
        NewRun {
            workspace: workspace.into(),
            experiment_id: experiment_id.into(),
            name: None,
            status: RunStatus::Running,
            start_ms: None,
            params: BTreeMap::new(),
            tags: BTreeMap::new(),
            compute: Compute::Tracked,
            labels: Vec::new(),
            job: None,
            parent_run_id: None,
            sweep_id: None,
            inputs: Vec::new(),
            user: String::new(),
        }
    }
}

/// Keeps a run or not (see `crate::search` for the filter grammar).
pub type RunFilterFn<'a> = dyn Fn(&Run) -> bool + Sync + 'a;
/// Orders two runs (see `crate::search` for order-by clauses).
pub type RunOrderFn<'a> = dyn Fn(&Run, &Run) -> std::cmp::Ordering + Sync + 'a;

/// Finds runs: the workspace, which experiments, and what must hold of each run.
pub struct RunQuery<'a> {
    pub workspace: &'a str,
    /// Experiment ids; empty means every experiment of the workspace.
    pub experiment_ids: Vec<String>,
    /// Keeps the runs it returns true for.
    pub filter: Option<&'a RunFilterFn<'a>>,
    /// Orders runs before the default newest-first order.
    pub order_by: Option<&'a RunOrderFn<'a>>,
    pub include_deleted: bool,
    pub limit: usize,
}

pub(super) fn check_param(key: &str, value: &str) -> TrackingResult<()> {
    check_key("param", key)?;
    if value.chars().count() > MAX_PARAM_VALUE_CHARS {
        return Err(TrackingError::invalid(format!(
            "param '{key}' is longer than {MAX_PARAM_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

pub(super) fn check_tag(key: &str, value: &str) -> TrackingResult<()> {
    check_key("tag", key)?;
    if value.chars().count() > MAX_TAG_VALUE_CHARS {
        return Err(TrackingError::invalid(format!(
            "tag '{key}' is longer than {MAX_TAG_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

impl Tracking {
    /// Creates a run under an experiment.
    ///
    /// # Errors
    /// `NotFound` for the experiment; `InvalidArgument` for bad keys.
    pub fn create_run(&self, new: NewRun) -> TrackingResult<Run> {
        let experiment = self.experiment_in(&new.workspace, &new.experiment_id)?;
        for (k, v) in &new.params {
            check_param(k, v)?;
        }
        for (k, v) in &new.tags {
            check_tag(k, v)?;
        }
        let id = shoal_store::random_hex(16)?;
        let now = shoal_store::now_ms();
        let name = new
            .name
            .filter(|n| !n.is_empty())
            .or_else(|| new.tags.get("mlflow.runName").cloned())
            .unwrap_or_else(|| format!("run-{}", &id[..8]));
        let mut tags = new.tags;
        tags.entry("mlflow.runName".into())
            .or_insert_with(|| name.clone());
        let started_ms = match new.status {
            RunStatus::Running => Some(new.start_ms.unwrap_or(now)),
            _ => new.start_ms,
        };
        let run = Run {
            id: id.clone(),
            workspace: new.workspace,
            experiment_id: experiment.id.clone(),
            name,
            status: new.status,
            lifecycle: Lifecycle::Active,
            created_ms: now,
            started_ms,
            ended_ms: None,
            params: new.params,
            tags,
            metrics: BTreeMap::new(),
            compute: new.compute,
            labels: new.labels,
            executor: None,
            heartbeat_ms: None,
            job: new.job,
            parent_run_id: new.parent_run_id,
            sweep_id: new.sweep_id,
            inputs: new.inputs,
            outputs: Vec::new(),
            exit_code: None,
            error: None,
            log_tail: Vec::new(),
            log_lines: 0,
            cancel_requested: false,
            user: new.user,
        };
        self.records.put(RUNS_TREE, &id, &run)?;
        self.reindex(&run)?;
        self.records.put(
            EXPERIMENT_RUNS_TREE,
            &format!("{}/{id}", experiment.id),
            &now,
        )?;
        self.changed();
        tracing::info!(run = %id, experiment = %experiment.name, status = run.status.as_str(), "run created");
        Ok(run)
    }

    /// # Errors
    /// `NotFound`.
    pub fn run(&self, id: &str) -> TrackingResult<Run> {
        self.records
            .get(RUNS_TREE, id)?
            .ok_or_else(|| TrackingError::not_found("run", id))
    }

    /// Changes a run record atomically; `change` may run more than once.
    ///
    /// # Errors
    /// `NotFound`, or what `change` returns.
    pub fn update_run(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Run) -> TrackingResult<()>,
    ) -> TrackingResult<Run> {
        let mut before = None;
        let run = self
            .records
            .update::<Run, TrackingError>(RUNS_TREE, id, |current| {
                let mut run = current.ok_or_else(|| TrackingError::not_found("run", id))?;
                before = Some((run.status, run.executor.is_some()));
                change(&mut run)?;
                Ok(run)
            })?;
        if before != Some((run.status, run.executor.is_some())) {
            self.reindex(&run)?;
        }
        self.changed();
        Ok(run)
    }

    /// Moves a run to a terminal status (no-op if it already has one). A run canceled without
    /// an `error` keeps the reason its cancel recorded (`canceled` if none).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        error: Option<String>,
        log_tail: Vec<String>,
    ) -> TrackingResult<Run> {
        let run = self.update_run(id, |run| {
            if run.status.is_terminal() {
                return Ok(());
            }
            run.status = status;
            run.ended_ms = Some(shoal_store::now_ms());
            run.exit_code = exit_code;
            run.error = match (&error, status) {
                (Some(error), _) => Some(error.clone()),
                (None, RunStatus::Canceled) => run.error.take().or_else(|| Some("canceled".into())),
                (None, _) => None,
            };
            run.log_tail = log_tail.clone();
            Ok(())
        })?;
        self.records.flush()?;
        tracing::info!(run = %id, status = run.status.as_str(), "run finished");
        Ok(run)
    }

    /// Logs params. A param is written once: logging it again with the same value is fine,
    /// with another value it is refused (as MLflow does), so a run's params never change.
    ///
    /// # Errors
    /// `InvalidArgument` for a changed value or a bad key.
    pub fn log_params(&self, run_id: &str, params: &[(String, String)]) -> TrackingResult<()> {
        for (k, v) in params {
            check_param(k, v)?;
        }
        self.update_run(run_id, |run| {
            for (k, v) in params {
                match run.params.get(k) {
                    Some(old) if old != v => {
                        return Err(TrackingError::invalid(format!(
                            "param '{k}' of run {run_id} is already '{old}'; changing it to '{v}' is not allowed"
                        )))
                    }
                    _ => {
                        run.params.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Sets tags (overwriting). `mlflow.runName` also renames the run.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad key or value.
    pub fn set_tags(&self, run_id: &str, tags: &[(String, String)]) -> TrackingResult<Run> {
        for (k, v) in tags {
            check_tag(k, v)?;
        }
        self.update_run(run_id, |run| {
            for (k, v) in tags {
                if k == "mlflow.runName" {
                    run.name = v.clone();
                }
                run.tags.insert(k.clone(), v.clone());
            }
            Ok(())
        })
    }

    /// # Errors
    /// `NotFound` for the run or the tag.
    pub fn delete_tag(&self, run_id: &str, key: &str) -> TrackingResult<Run> {
        self.update_run(run_id, |run| {
            run.tags
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| TrackingError::not_found("tag", key))
        })
    }

    /// Marks a run deleted (MLflow's `runs/delete`); it stops showing in searches.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn set_run_lifecycle(&self, run_id: &str, lifecycle: Lifecycle) -> TrackingResult<Run> {
        self.update_run(run_id, |run| {
            run.lifecycle = lifecycle;
            Ok(())
        })
    }

    /// Ids of every run of an experiment, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn experiment_run_ids(&self, experiment_id: &str) -> TrackingResult<Vec<String>> {
        let prefix = format!("{experiment_id}/");
        let mut keyed: Vec<(i64, String)> = self
            .records
            .scan_with_keys::<i64>(EXPERIMENT_RUNS_TREE, &prefix)?
            .into_iter()
            .map(|(key, created)| (created, key[prefix.len()..].to_string()))
            .collect();
        keyed.sort();
        Ok(keyed.into_iter().map(|(_, id)| id).collect())
    }

    /// Runs matching a query, ordered by its order-by and then newest first.
    ///
    /// # Errors
    /// `NotFound` for an experiment of another workspace.
    pub fn search_runs(&self, query: &RunQuery<'_>) -> TrackingResult<Vec<Run>> {
        let experiment_ids = if query.experiment_ids.is_empty() {
            self.experiments(query.workspace, false)?
                .into_iter()
                .map(|e| e.id)
                .collect()
        } else {
            let mut ids = Vec::new();
            for id in &query.experiment_ids {
                ids.push(self.experiment_in(query.workspace, id)?.id);
            }
            ids
        };
        let mut runs = Vec::new();
        for experiment_id in experiment_ids {
            for run_id in self.experiment_run_ids(&experiment_id)? {
                let Some(run) = self.records.get::<Run>(RUNS_TREE, &run_id)? else {
                    continue;
                };
                if run.lifecycle == Lifecycle::Deleted && !query.include_deleted {
                    continue;
                }
                if let Some(filter) = query.filter {
                    if !filter(&run) {
                        continue;
                    }
                }
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| {
            query
                .order_by
                .map(|order| order(a, b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| b.created_ms.cmp(&a.created_ms))
                .then_with(|| a.id.cmp(&b.id))
        });
        if query.limit > 0 {
            runs.truncate(query.limit);
        }
        Ok(runs)
    }
}
