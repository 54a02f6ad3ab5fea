//! Experiment tracking: experiments, runs, their params, metric series, tags, logs and
//! artifacts. The gRPC API, the MLflow-compatible REST API, the job scheduler, built-in
//! trainers and sweeps all record through [`Tracking`], so a run looks the same whoever made it.
//!
//! # Records
//! - `experiments/{id}`: [`Experiment`]; ids are decimal numbers from one hub-wide counter, so
//!   MLflow clients (which expect numeric ids) can use them. `experiment_names/{ws}/{name}` → id.
//!   Each workspace has a `Default` experiment; MLflow's experiment id `0` names it.
//! - `runs/{run_id}`: [`Run`]; ids are 32 hex digits, like MLflow's, and unique hub-wide.
//!   `experiment_runs/{experiment_id}/{run_id}` lists an experiment's runs.
//! - `run_metrics/{run_id}/{key as hex}/{seq}`: every logged metric point, in logging order;
//!   the run record keeps only each metric's latest point.
//! - `run_logs/{run_id}/{line:012}`: the run's log, one record per line.
//! - `run_queue/{compute}/{created_ms}/{run_id}` and `run_active/{run_id}`: indexes of queued
//!   runs and of runs an executor holds, kept with every status change.
//! - `artifact_index/{exp_id}/{run_id}/artifacts/{path}`: files stored in the artifact store
//!   (content-addressed); the key is the path MLflow's artifact proxy uses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{TrackingError, TrackingResult};
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

const EXPERIMENTS_TREE: &str = "experiments";
const EXPERIMENT_NAMES_TREE: &str = "experiment_names";
const RUNS_TREE: &str = "runs";
const EXPERIMENT_RUNS_TREE: &str = "experiment_runs";
const METRICS_TREE: &str = "run_metrics";
const LOGS_TREE: &str = "run_logs";
const ARTIFACT_INDEX_TREE: &str = "artifact_index";
const COUNTERS_TREE: &str = "counters";
/// Queued runs by target and age (`{compute}/{created_ms:016}/{run_id}`), so the scheduler
/// never scans every run.
const RUN_QUEUE_TREE: &str = "run_queue";
/// Runs an executor holds now (`{run_id}`), for the heartbeat reaper.
const RUN_ACTIVE_TREE: &str = "run_active";

/// The experiment every workspace has, and the one MLflow's id `0` stands for.
pub const DEFAULT_EXPERIMENT: &str = "Default";

/// Longest accepted metric, param or tag key, and param value (MLflow's limits).
const MAX_KEY_CHARS: usize = 250;
const MAX_PARAM_VALUE_CHARS: usize = 6000;
const MAX_TAG_VALUE_CHARS: usize = 8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Active,
    Deleted,
}

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

/// One point of a metric series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// NaN and infinities are stored as strings: JSON numbers cannot hold them.
    #[serde(with = "non_finite_f64")]
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

/// What a queued run executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Builtin(BuiltinJob),
    Script(ScriptJob),
}

/// A built-in trainer on a registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuiltinJob {
    /// `mlp` or `logreg`.
    pub trainer: String,
    /// `sensors@1`, resolved at submission so the run always names one version.
    pub dataset: String,
    pub target: String,
    /// Feature columns; empty: every column but the target.
    pub features: Vec<String>,
    /// Register the trained model under this name when the run completes.
    pub register_as: Option<String>,
}

/// A user's command in an uploaded source snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptJob {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// sha256 of the snapshot (tar.gz) in the artifact store.
    pub source_digest: String,
    pub source_bytes: u64,
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

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1-based position in the log.
    pub number: u64,
    pub timestamp_ms: i64,
    pub text: String,
}

/// A file stored for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub digest: String,
    pub size_bytes: u64,
}

/// An entry of an artifact folder listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactListing {
    /// Path relative to the listing root's parent, as MLflow reports it.
    pub path: String,
    pub is_dir: bool,
    pub size_bytes: u64,
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

#[derive(Clone)]
pub struct Tracking {
    records: Records,
    workspaces: Workspaces,
    /// Bumped on every change to any run's status, metrics or log; followers wait on it.
    changes: Arc<watch::Sender<u64>>,
    /// Orders metric points within a run. Starts at the clock in microseconds so points
    /// logged after a restart still sort after earlier ones.
    metric_seq: Arc<AtomicU64>,
}

fn hex_key(key: &str) -> String {
    hex::encode(key.as_bytes())
}

fn check_key(kind: &str, key: &str) -> TrackingResult<()> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(TrackingError::invalid(format!(
            "{kind} key '{key}' must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    if key.contains("..") || key.starts_with('/') || key.contains('\0') {
        return Err(TrackingError::invalid(format!(
            "{kind} key '{key}' must not start with '/', contain '..' or NUL"
        )));
    }
    Ok(())
}

fn is_latest(new: &MetricPoint, old: &MetricPoint) -> bool {
    (new.step, new.timestamp_ms) >= (old.step, old.timestamp_ms)
}

impl Tracking {
    pub fn new(records: Records, workspaces: Workspaces) -> Tracking {
        let (changes, _) = watch::channel(0);
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Tracking {
            records,
            workspaces,
            changes: Arc::new(changes),
            metric_seq: Arc::new(AtomicU64::new(start)),
        }
    }

    pub fn workspaces(&self) -> &Workspaces {
        &self.workspaces
    }

    /// A receiver that sees a new value after every run change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    // === experiments ===

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

    /// Keeps the queue and active-run indexes in step with a run's status.
    fn reindex(&self, run: &Run) -> TrackingResult<()> {
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

    /// Logs metric points. Non-finite values are kept (MLflow allows NaN and infinities).
    /// Returns the run as it stands after them (`None` when there were none).
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a bad key; `FailedPrecondition` for a deleted run.
    pub fn log_metrics(
        &self,
        run_id: &str,
        points: &[(String, MetricPoint)],
    ) -> TrackingResult<Option<Run>> {
        if points.is_empty() {
            return Ok(None);
        }
        for (key, _) in points {
            check_key("metric", key)?;
        }
        let run = self.run(run_id)?;
        if run.lifecycle == Lifecycle::Deleted {
            return Err(TrackingError::FailedPrecondition(format!(
                "run {run_id} is deleted"
            )));
        }
        for (key, point) in points {
            let seq = self.metric_seq.fetch_add(1, Ordering::Relaxed);
            self.records.put(
                METRICS_TREE,
                &format!("{run_id}/{}/{seq:020}", hex_key(key)),
                point,
            )?;
        }
        let run = self.update_run(run_id, |run| {
            for (key, point) in points {
                match run.metrics.get(key) {
                    Some(old) if !is_latest(point, old) => {}
                    _ => {
                        run.metrics.insert(key.clone(), *point);
                    }
                }
            }
            Ok(())
        })?;
        Ok(Some(run))
    }

    /// Every point of one metric, in the order logged.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn metric_history(&self, run_id: &str, key: &str) -> TrackingResult<Vec<MetricPoint>> {
        self.run(run_id)?;
        Ok(self
            .records
            .scan(METRICS_TREE, &format!("{run_id}/{}/", hex_key(key)))?)
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

    /// Appends lines to a run's log and returns the new line count.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn append_log(&self, run_id: &str, lines: &[(i64, String)]) -> TrackingResult<u64> {
        if lines.is_empty() {
            return Ok(self.run(run_id)?.log_lines);
        }
        // Reserve the line numbers first, so concurrent appenders never share one.
        let mut first = 0;
        let run = self.update_run(run_id, |run| {
            first = run.log_lines + 1;
            run.log_lines += lines.len() as u64;
            Ok(())
        })?;
        for (i, (timestamp_ms, text)) in lines.iter().enumerate() {
            let number = first + i as u64;
            let line = LogLine {
                number,
                timestamp_ms: *timestamp_ms,
                text: text.clone(),
            };
            self.records
                .put(LOGS_TREE, &format!("{run_id}/{number:012}"), &line)?;
        }
        self.changed();
        Ok(run.log_lines)
    }

    /// Log lines after line `after` (0: from the start), at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn log_lines(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> TrackingResult<Vec<LogLine>> {
        let from = format!("{run_id}/{:012}", after + 1);
        let to = format!("{run_id}/{:012}", after.saturating_add(limit as u64 + 1));
        let lines = self.records.scan_range_bytes(LOGS_TREE, &from, &to)?;
        lines
            .into_iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    TrackingError::Internal(format!("log record {key} is corrupt: {e}"))
                })
            })
            .collect()
    }

    /// The last `n` lines of a run's log.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn log_tail(&self, run_id: &str, n: usize) -> TrackingResult<Vec<String>> {
        let total = self.run(run_id)?.log_lines;
        let after = total.saturating_sub(n as u64);
        Ok(self
            .log_lines(run_id, after, n)?
            .into_iter()
            .map(|l| l.text)
            .collect())
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

    /// Records that `path` under an artifact root holds a stored blob.
    ///
    /// # Errors
    /// `InvalidArgument` for a path with `..` or an absolute path.
    pub fn put_artifact(&self, full_path: &str, entry: &ArtifactEntry) -> TrackingResult<()> {
        check_artifact_path(full_path)?;
        self.records.put(ARTIFACT_INDEX_TREE, full_path, entry)?;
        Ok(())
    }

    /// # Errors
    /// `NotFound`.
    pub fn artifact(&self, full_path: &str) -> TrackingResult<ArtifactEntry> {
        check_artifact_path(full_path)?;
        self.records
            .get(ARTIFACT_INDEX_TREE, full_path)?
            .ok_or_else(|| TrackingError::not_found("artifact", full_path))
    }

    /// Every file below a folder, with paths relative to it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn artifacts_under(&self, folder: &str) -> TrackingResult<Vec<(String, ArtifactEntry)>> {
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        Ok(self
            .records
            .scan_with_keys::<ArtifactEntry>(ARTIFACT_INDEX_TREE, &prefix)?
            .into_iter()
            .map(|(key, entry)| (key[prefix.len()..].to_string(), entry))
            .collect())
    }

    /// The direct children of an artifact folder (MLflow's `list_artifacts`): files with
    /// their sizes, sub-folders once each. Paths are relative to `root`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list_artifact_folder(
        &self,
        root: &str,
        folder: &str,
    ) -> TrackingResult<Vec<ArtifactListing>> {
        let folder = folder.trim_matches('/');
        let base = if folder.is_empty() {
            root.trim_end_matches('/').to_string()
        } else {
            format!("{}/{folder}", root.trim_end_matches('/'))
        };
        let mut listing: Vec<ArtifactListing> = Vec::new();
        for (rel, entry) in self.artifacts_under(&base)? {
            let (name, is_dir) = match rel.split_once('/') {
                Some((dir, _)) => (dir.to_string(), true),
                None => (rel.clone(), false),
            };
            let path = if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            };
            if is_dir {
                if listing.last().is_some_and(|l| l.path == path) {
                    continue;
                }
                listing.push(ArtifactListing {
                    path,
                    is_dir: true,
                    size_bytes: 0,
                });
            } else {
                listing.push(ArtifactListing {
                    path,
                    is_dir: false,
                    size_bytes: entry.size_bytes,
                });
            }
        }
        Ok(listing)
    }

    pub fn flush(&self) -> TrackingResult<()> {
        Ok(self.records.flush()?)
    }
}

/// A run's key in the queue index: by target, then age.
fn queue_key(run: &Run) -> String {
    format!(
        "{}/{:016}/{}",
        run.compute.as_str(),
        run.created_ms.max(0),
        run.id
    )
}

fn check_experiment_name(name: &str) -> TrackingResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.contains('/') {
        return Err(TrackingError::invalid(format!(
            "experiment name '{name}' must be 1 to 200 characters without '/'"
        )));
    }
    Ok(())
}

fn check_param(key: &str, value: &str) -> TrackingResult<()> {
    check_key("param", key)?;
    if value.chars().count() > MAX_PARAM_VALUE_CHARS {
        return Err(TrackingError::invalid(format!(
            "param '{key}' is longer than {MAX_PARAM_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_tag(key: &str, value: &str) -> TrackingResult<()> {
    check_key("tag", key)?;
    if value.chars().count() > MAX_TAG_VALUE_CHARS {
        return Err(TrackingError::invalid(format!(
            "tag '{key}' is longer than {MAX_TAG_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks an artifact path: relative, no `..`, no empty parts.
///
/// # Errors
/// `InvalidArgument` naming the path.
pub fn check_artifact_path(path: &str) -> TrackingResult<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path.split('/').any(|part| part == ".." || part == ".");
    if bad {
        return Err(TrackingError::invalid(format!(
            "artifact path '{path}' must be relative, without '.', '..' or backslashes"
        )));
    }
    Ok(())
}

/// Serde for an `f64` that may be NaN or infinite (MLflow allows such metric values): finite
/// values as JSON numbers, the others as `"NaN"`, `"Infinity"`, `"-Infinity"`.
mod non_finite_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value == f64::INFINITY {
            serializer.serialize_str("Infinity")
        } else if *value == f64::NEG_INFINITY {
            serializer.serialize_str("-Infinity")
        } else {
            serializer.serialize_f64(*value)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Text(String),
        /// Records written before non-finite values were encoded hold `null` for them.
        Null(()),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Number(n) => Ok(n),
            Stored::Null(()) => Ok(f64::NAN),
            Stored::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(serde::de::Error::custom),
            },
        }
    }
}

#[cfg(test)]
mod non_finite_tests {
    use super::MetricPoint;

    #[test]
    fn non_finite_metric_values_survive_a_json_roundtrip() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25] {
            let point = MetricPoint {
                value,
                step: 1,
                timestamp_ms: 2,
            };
            let json = serde_json::to_string(&point).expect("serialize");
            let back: MetricPoint = serde_json::from_str(&json).expect("deserialize");
            assert!(
                back.value == value || (value.is_nan() && back.value.is_nan()),
                "{json}"
            );
        }
        let old: MetricPoint =
            serde_json::from_str(r#"{"value":null,"step":0,"timestamp_ms":0}"#).expect("null");
        assert!(old.value.is_nan());
    }
}

// === logged models (MLflow 3) ===
//
// MLflow 3's `log_model` does not write run artifacts: it creates a *logged model* (an id
// `m-<32 hex>`), uploads the model folder below the logged model's own artifact root
// (`{experiment}/models/{id}/artifacts/...` in `artifact_index`), finalizes it and links it to
// the run that produced it. Records:
// - `logged_models/{model_id}`: [`LoggedModel`].
// - `experiment_logged_models/{experiment_id}/{model_id}` → creation time: an experiment's
//   logged models.
// A run lists the logged models it output in its [`RUN_LOGGED_MODELS_TAG`] tag.

const LOGGED_MODELS_TREE: &str = "logged_models";
const EXPERIMENT_LOGGED_MODELS_TREE: &str = "experiment_logged_models";

/// The run tag listing the logged models a run output, as a JSON list of
/// `{"model_id": "m-…", "step": 0}` in the order they were linked.
pub const RUN_LOGGED_MODELS_TAG: &str = "mlflow.loggedModels";

/// Longest accepted logged-model name.
const MAX_LOGGED_MODEL_NAME_CHARS: usize = 250;

/// Where a logged model is in its life (MLflow's `LoggedModelStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoggedModelStatus {
    /// Created; its files are being uploaded.
    Pending,
    /// Finalized: every file is uploaded.
    Ready,
    /// The client gave up uploading its files.
    UploadFailed,
}

impl LoggedModelStatus {
    /// MLflow's name for the status.
    pub fn mlflow_name(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Parses MLflow's name (with or without the `LOGGED_MODEL_` prefix) or its number.
    pub fn parse(name: &str) -> Option<LoggedModelStatus> {
        let name = name.trim().to_ascii_uppercase();
        let name = name.strip_prefix("LOGGED_MODEL_").unwrap_or(&name);
        Some(match name {
            "PENDING" | "1" => LoggedModelStatus::Pending,
            "READY" | "2" => LoggedModelStatus::Ready,
            "UPLOAD_FAILED" | "3" => LoggedModelStatus::UploadFailed,
            _ => return None,
        })
    }
}

/// A model logged by MLflow 3's `log_model`: a folder of files (an `MLmodel` and the flavor's
/// files) with params and tags, usually produced by a run. It is not a registry entry: the
/// registry takes a version from it when it is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    /// `m-` and 32 hex digits, unique hub-wide.
    pub id: String,
    pub workspace: String,
    pub experiment_id: String,
    pub name: String,
    /// A free-form type the client may set (`agent`, ...); empty when unset.
    pub model_type: String,
    /// The run that produced it, if any.
    pub source_run_id: Option<String>,
    pub status: LoggedModelStatus,
    pub lifecycle: Lifecycle,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl LoggedModel {
    /// The model's artifact root as a key prefix: `{experiment}/models/{id}/artifacts`.
    pub fn artifact_root(&self) -> String {
        format!("{}/models/{}/artifacts", self.experiment_id, self.id)
    }

    /// The model's artifact root, as MLflow clients address it.
    pub fn artifact_uri(&self) -> String {
        format!("mlflow-artifacts:/{}", self.artifact_root())
    }
}

/// What a new logged model is created with.
#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    pub workspace: String,
    pub experiment_id: String,
    /// `None` or empty: a generated name.
    pub name: Option<String>,
    pub model_type: String,
    pub source_run_id: Option<String>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// One entry of a run's [`RUN_LOGGED_MODELS_TAG`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunModelOutput {
    pub model_id: String,
    pub step: i64,
}

/// The logged models a run output, read from its [`RUN_LOGGED_MODELS_TAG`] (empty when the
/// tag is absent or unreadable).
pub fn run_model_outputs(run: &Run) -> Vec<RunModelOutput> {
    run.tags
        .get(RUN_LOGGED_MODELS_TAG)
        .and_then(|value| serde_json::from_str(value).ok())
        .unwrap_or_default()
}

fn check_logged_model_name(name: &str) -> TrackingResult<()> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_LOGGED_MODEL_NAME_CHARS
        || name.contains('/')
        || name.contains('\0')
    {
        return Err(TrackingError::invalid(format!(
            "logged model name '{name}' must be 1 to {MAX_LOGGED_MODEL_NAME_CHARS} characters \
             without '/'"
        )));
    }
    Ok(())
}

impl Tracking {
    /// Creates a logged model in the `Pending` status.
    ///
    /// # Errors
    /// `NotFound` for the experiment, or for a source run of another workspace;
    /// `InvalidArgument` for a bad name, key or value.
    pub fn create_logged_model(&self, new: NewLoggedModel) -> TrackingResult<LoggedModel> {
        let experiment = self.experiment_in(&new.workspace, &new.experiment_id)?;
        if let Some(run_id) = &new.source_run_id {
            let run = self.run(run_id)?;
            if run.workspace != new.workspace {
                return Err(TrackingError::not_found("run", run_id));
            }
        }
        for (k, v) in &new.params {
            check_param(k, v)?;
        }
        for (k, v) in &new.tags {
            check_tag(k, v)?;
        }
        let id = format!("m-{}", shoal_store::random_hex(16)?);
        let name = match new.name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => format!("model-{}", &id[2..10]),
        };
        check_logged_model_name(&name)?;
        let now = shoal_store::now_ms();
        let model = LoggedModel {
            id: id.clone(),
            workspace: new.workspace,
            experiment_id: experiment.id.clone(),
            name,
            model_type: new.model_type,
            source_run_id: new.source_run_id,
            status: LoggedModelStatus::Pending,
            lifecycle: Lifecycle::Active,
            params: new.params,
            tags: new.tags,
            created_ms: now,
            updated_ms: now,
        };
        if !self.records.insert_new(LOGGED_MODELS_TREE, &id, &model)? {
            return Err(TrackingError::Internal(format!(
                "logged model id {id} was already taken"
            )));
        }
        self.records.put(
            EXPERIMENT_LOGGED_MODELS_TREE,
            &format!("{}/{id}", experiment.id),
            &now,
        )?;
        tracing::info!(model = %id, name = %model.name, experiment = %experiment.name, "logged model created");
        Ok(model)
    }

    /// A logged model by id, deleted ones included.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn logged_model(&self, id: &str) -> TrackingResult<LoggedModel> {
        self.records
            .get(LOGGED_MODELS_TREE, id)?
            .ok_or_else(|| TrackingError::not_found("logged model", id))
    }

    /// Changes a logged model atomically; `change` may run more than once.
    ///
    /// # Errors
    /// `NotFound`, or what `change` returns.
    pub fn update_logged_model(
        &self,
        id: &str,
        mut change: impl FnMut(&mut LoggedModel) -> TrackingResult<()>,
    ) -> TrackingResult<LoggedModel> {
        self.records
            .update::<LoggedModel, TrackingError>(LOGGED_MODELS_TREE, id, |current| {
                let mut model =
                    current.ok_or_else(|| TrackingError::not_found("logged model", id))?;
                change(&mut model)?;
                model.updated_ms = shoal_store::now_ms();
                Ok(model)
            })
    }

    /// Sets a logged model's status (MLflow's finalize: `Ready` or `UploadFailed`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn finalize_logged_model(
        &self,
        id: &str,
        status: LoggedModelStatus,
    ) -> TrackingResult<LoggedModel> {
        let model = self.update_logged_model(id, |model| {
            model.status = status;
            Ok(())
        })?;
        self.records.flush()?;
        Ok(model)
    }

    /// Logs params on a logged model. As on runs, a param is written once: the same value
    /// again is fine, another value is refused.
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a changed value or a bad key.
    pub fn log_logged_model_params(
        &self,
        id: &str,
        params: &[(String, String)],
    ) -> TrackingResult<LoggedModel> {
        for (k, v) in params {
            check_param(k, v)?;
        }
        self.update_logged_model(id, |model| {
            for (k, v) in params {
                match model.params.get(k) {
                    Some(old) if old != v => {
                        return Err(TrackingError::invalid(format!(
                            "param '{k}' of logged model {id} is already '{old}'; changing it \
                             to '{v}' is not allowed"
                        )))
                    }
                    _ => {
                        model.params.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(())
        })
    }

    /// Sets tags on a logged model (overwriting).
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a bad key or value.
    pub fn set_logged_model_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
    ) -> TrackingResult<LoggedModel> {
        for (k, v) in tags {
            check_tag(k, v)?;
        }
        self.update_logged_model(id, |model| {
            for (k, v) in tags {
                model.tags.insert(k.clone(), v.clone());
            }
            Ok(())
        })
    }

    /// # Errors
    /// `NotFound` for the logged model or the tag.
    pub fn delete_logged_model_tag(&self, id: &str, key: &str) -> TrackingResult<LoggedModel> {
        self.update_logged_model(id, |model| {
            model
                .tags
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| TrackingError::not_found("tag", key))
        })
    }

    /// Every logged model of an experiment, deleted ones included, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn experiment_logged_models(
        &self,
        experiment_id: &str,
    ) -> TrackingResult<Vec<LoggedModel>> {
        let prefix = format!("{experiment_id}/");
        let mut keyed: Vec<(i64, String)> = self
            .records
            .scan_with_keys::<i64>(EXPERIMENT_LOGGED_MODELS_TREE, &prefix)?
            .into_iter()
            .map(|(key, created)| (created, key[prefix.len()..].to_string()))
            .collect();
        keyed.sort();
        let mut models = Vec::with_capacity(keyed.len());
        for (_, id) in keyed {
            if let Some(model) = self.records.get::<LoggedModel>(LOGGED_MODELS_TREE, &id)? {
                models.push(model);
            }
        }
        Ok(models)
    }

    /// Records that a run output a logged model (MLflow's `runs/outputs`), in the run's
    /// [`RUN_LOGGED_MODELS_TAG`]. Linking the same model at the same step again changes
    /// nothing.
    ///
    /// # Errors
    /// `NotFound` for the run or the model; `InvalidArgument` when the model is of another
    /// workspace or the tag would grow past a tag's size limit.
    pub fn link_logged_model_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> TrackingResult<Run> {
        let model = self.logged_model(model_id)?;
        let run = self.run(run_id)?;
        if model.workspace != run.workspace {
            return Err(TrackingError::not_found("logged model", model_id));
        }
        self.update_run(run_id, |run| {
            let mut outputs = run_model_outputs(run);
            let entry = RunModelOutput {
                model_id: model_id.to_string(),
                step,
            };
            if outputs.contains(&entry) {
                return Ok(());
            }
            outputs.push(entry);
            let value = serde_json::to_string(&outputs)
                .map_err(|e| TrackingError::Internal(format!("logged model list: {e}")))?;
            check_tag(RUN_LOGGED_MODELS_TAG, &value)?;
            run.tags.insert(RUN_LOGGED_MODELS_TAG.to_string(), value);
            Ok(())
        })
    }
}

#[cfg(test)]
mod logged_model_tests {
    use super::*;
    use shoal_store::storage::{MemoryStore, Records};

    fn tracking() -> Tracking {
        let records = Records::new(std::sync::Arc::new(MemoryStore::default()));
        let workspaces = Workspaces::new(records.clone());
        workspaces.ensure_default().expect("default workspace");
        Tracking::new(records, workspaces)
    }

    #[test]
    fn logged_models_are_created_finalized_tagged_and_linked() {
        let tracking = tracking();
        let run = tracking
            .create_run(NewRun::tracked("default", "0"))
            .expect("run");
        let model = tracking
            .create_logged_model(NewLoggedModel {
                workspace: "default".into(),
                experiment_id: "0".into(),
                name: Some("model".into()),
                source_run_id: Some(run.id.clone()),
                params: [("lr".to_string(), "0.1".to_string())].into(),
                ..Default::default()
            })
            .expect("logged model");
        assert!(
            model.id.starts_with("m-") && model.id.len() == 34,
            "{}",
            model.id
        );
        assert_eq!(model.status, LoggedModelStatus::Pending);
        assert_eq!(
            model.artifact_root(),
            format!("{}/models/{}/artifacts", model.experiment_id, model.id)
        );
        check_artifact_path(&format!("{}/model.onnx", model.artifact_root())).expect("path");

        let ready = tracking
            .finalize_logged_model(&model.id, LoggedModelStatus::Ready)
            .expect("finalize");
        assert_eq!(ready.status, LoggedModelStatus::Ready);
        tracking
            .log_logged_model_params(&model.id, &[("lr".into(), "0.1".into())])
            .expect("same value again");
        assert!(tracking
            .log_logged_model_params(&model.id, &[("lr".into(), "0.2".into())])
            .is_err());
        tracking
            .set_logged_model_tags(&model.id, &[("team".into(), "occ".into())])
            .expect("tags");
        let tagged = tracking
            .delete_logged_model_tag(&model.id, "team")
            .expect("delete tag");
        assert!(tagged.tags.is_empty());

        tracking
            .link_logged_model_output(&run.id, &model.id, 0)
            .expect("link");
        let linked = tracking
            .link_logged_model_output(&run.id, &model.id, 0)
            .expect("link again");
        assert_eq!(
            run_model_outputs(&linked),
            vec![RunModelOutput {
                model_id: model.id.clone(),
                step: 0
            }]
        );
        let listed = tracking
            .experiment_logged_models(&model.experiment_id)
            .expect("list");
        assert_eq!(
            listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [model.id.as_str()]
        );
        assert!(LoggedModelStatus::parse("LOGGED_MODEL_READY") == Some(LoggedModelStatus::Ready));
        assert!(tracking
            .create_logged_model(NewLoggedModel {
                workspace: "default".into(),
                experiment_id: "0".into(),
                name: Some("a/b".into()),
                ..Default::default()
            })
            .is_err());
    }
}

// === workspace deletion ===

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
        let mut held = Vec::new();
        if experiments > 0 {
            held.push(format!("{experiments} experiments"));
        }
        if runs > 0 {
            held.push(format!("{runs} runs"));
        }
        Ok(held)
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
