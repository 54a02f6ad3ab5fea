//! Experiment tracking: experiments, runs, their params, metric series, tags, logs and
//! artifacts. The gRPC API, the MLflow-compatible REST API, the job scheduler, built-in
//! trainers and sweeps all record through [`Tracking`], so a run looks the same whoever made it.
//!
//! # Layout
//! - [`experiments`], [`runs`] (params, tags, search), [`metrics`], [`logs`], [`artifacts`]
//!   (the artifact index): one concept each.
//! - [`queue`]: the scheduler's queue and active-run indexes.
//! - [`logged_models`]: MLflow 3 logged models.
//! - [`contents`]: what a workspace holds here, and deleting it.
//!
//! What a run executes (`Job`) is [`crate::job`]'s.
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

mod artifacts;
mod contents;
mod experiments;
mod logged_models;
mod logs;
mod metrics;
mod queue;
mod runs;

pub use self::artifacts::{check_artifact_path, ArtifactEntry, ArtifactListing};
pub use self::experiments::Experiment;
pub use self::logged_models::{
    run_model_outputs, LoggedModel, LoggedModelStatus, NewLoggedModel, RunModelOutput,
    RUN_LOGGED_MODELS_TAG,
};
pub use self::logs::LogLine;
pub use self::metrics::MetricPoint;
pub use self::runs::{Compute, NewRun, Run, RunFilterFn, RunOrderFn, RunQuery, RunStatus};
pub use crate::job::{BuiltinJob, Job, ScriptJob};

// What one concept's file needs from another's (each child takes `super::*`).
use self::logged_models::{EXPERIMENT_LOGGED_MODELS_TREE, LOGGED_MODELS_TREE};
use self::queue::queue_key;
use self::runs::{check_param, check_tag};

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

    pub fn flush(&self) -> TrackingResult<()> {
        Ok(self.records.flush()?)
    }
}
