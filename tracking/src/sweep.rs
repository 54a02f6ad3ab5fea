//! Sweeps: hyperparameter tuning over built-in trainer runs.
//!
//! A sweep samples its parameter sets when it is submitted (grid or seeded random, from
//! `shoal-experiment`), creates a parent run, and then the controller
//! ([`Sweeps::run_controller`]) keeps up to `concurrency` child runs queued or running until
//! every set has run. While children train, the early termination policy (median stopping or
//! bandit) sees every epoch's primary metric through [`StopAdvisor`] and stops runs that are
//! clearly worse. When all children have ended, the best completed child is chosen by the
//! primary metric and goal, logged on the parent, and optionally registered as a model.
//!
//! # Records
//! - `sweeps/{id}`: [`Sweep`]; `sweeps_running/{id}` while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_experiment::{
    best_run, EarlyStop, Goal, MetricHistory, ParamSpec, Sampling, SearchSpace,
};
use tokio_util::sync::CancellationToken;

use crate::error::{TrackingError, TrackingResult};
use crate::jobs::{builtin, Jobs, StopAdvisor, Submission};
use crate::tracking::{Compute, Job, MetricPoint, NewRun, Run, RunStatus, Tracking};
use shoal_store::storage::Records;

const SWEEPS_TREE: &str = "sweeps";
/// Ids of running sweeps, so the controller never scans finished ones.
const RUNNING_SWEEPS_TREE: &str = "sweeps_running";

/// Most child runs one sweep may plan.
const MAX_SWEEP_RUNS: u32 = 1000;
/// How often the controller looks at running sweeps when nothing wakes it.
const CONTROLLER_TICK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepStatus {
    Running,
    Completed,
    Failed,
    Canceled,
}

impl SweepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepStatus::Running => "running",
            SweepStatus::Completed => "completed",
            SweepStatus::Failed => "failed",
            SweepStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub id: String,
    pub workspace: String,
    pub experiment: String,
    pub name: String,
    pub status: SweepStatus,
    pub parent_run_id: String,
    /// Parameter name → spec as typed (`choice(8,16,32)`).
    pub space: BTreeMap<String, String>,
    pub sampling: Sampling,
    pub max_runs: u32,
    pub concurrency: u32,
    pub metric: String,
    pub goal: Goal,
    pub early_stop: EarlyStop,
    /// What every child runs: a built-in trainer (dataset and target), or a script whose
    /// command takes the child's params as `${{params.NAME}}`.
    pub job: Job,
    /// Where the children run.
    pub compute: Compute,
    pub labels: Vec<String>,
    /// Register the best child's `outputs/model.onnx` under this name.
    pub register_best: Option<String>,
    /// The parameter sets, sampled at submission; child `i` runs set `i`.
    pub planned: Vec<BTreeMap<String, String>>,
    pub child_runs: Vec<String>,
    pub best_run_id: Option<String>,
    pub best_value: Option<f64>,
    /// `name@version` of the registered best model.
    pub registered: Option<String>,
    pub created_ms: i64,
    pub error: Option<String>,
}

/// What a sweep is submitted with, as typed.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub workspace: String,
    pub experiment: String,
    pub name: String,
    pub job: Job,
    pub compute: Compute,
    pub labels: Vec<String>,
    pub register_best: Option<String>,
    pub space: BTreeMap<String, String>,
    /// `random` (default) or `grid`.
    pub sampling: String,
    pub seed: u64,
    pub max_runs: u32,
    pub concurrency: u32,
    pub metric: String,
    /// `max` or `min`.
    pub goal: String,
    /// `none` (default), `median`, `bandit:0.1`.
    pub early_stop: String,
}

#[derive(Clone)]
pub struct Sweeps {
    records: Records,
    jobs: Jobs,
}

impl Sweeps {
    /// Creates the controller and installs it as the jobs layer's early-termination advisor.
    pub fn new(records: Records, jobs: Jobs) -> Sweeps {
        // The advisor holds the records and the tracking store, not the jobs layer: the jobs
        // layer holds the advisor, and a cycle would keep the store open after shutdown.
        jobs.set_stop_advisor(Arc::new(SweepAdvisor {
            records: records.clone(),
            tracking: jobs.tracking().clone(),
        }));
        Sweeps { records, jobs }
    }

    /// Checks and plans a sweep, creates its parent run and stores it; the controller starts
    /// its children.
    ///
    /// # Errors
    /// `InvalidArgument` naming the bad spec, sampling, goal, policy or param; `NotFound` for
    /// the dataset.
    pub fn submit(&self, spec: SweepSpec) -> TrackingResult<Sweep> {
        let invalid = |e: &dyn std::fmt::Display| TrackingError::invalid(e.to_string());
        if spec.space.is_empty() {
            return Err(TrackingError::invalid(
                "a sweep needs at least one --param with a search space, such as hidden=choice(8,16,32)",
            ));
        }
        let mut params = Vec::new();
        for (name, text) in &spec.space {
            let parsed = ParamSpec::parse(text)
                .map_err(|e| TrackingError::invalid(format!("--param {name}={text}: {e}")))?;
            params.push((name.clone(), parsed));
        }
        let space = SearchSpace::new(params).map_err(|e| invalid(&e))?;
        let sampling = match spec.sampling.as_str() {
            "" | "random" => Sampling::Random { seed: spec.seed },
            other => Sampling::parse(other).map_err(|e| invalid(&e))?,
        };
        let goal = Goal::parse(if spec.goal.is_empty() {
            "max"
        } else {
            &spec.goal
        })
        .map_err(|e| invalid(&e))?;
        let early_stop = EarlyStop::parse(if spec.early_stop.is_empty() {
            "none"
        } else {
            &spec.early_stop
        })
        .map_err(|e| invalid(&e))?;
        if spec.metric.is_empty() {
            return Err(TrackingError::invalid(
                "a sweep needs --metric, the metric to optimize (such as accuracy)",
            ));
        }
        if spec.max_runs == 0 || spec.max_runs > MAX_SWEEP_RUNS {
            return Err(TrackingError::invalid(format!(
                "--max-runs must be 1 to {MAX_SWEEP_RUNS}"
            )));
        }
        let planned = space
            .sample(sampling, spec.max_runs as usize)
            .map_err(|e| invalid(&e))?;
        let mut inputs = Vec::new();
        let job = match spec.job {
            Job::Builtin(mut job) => {
                for set in &planned {
                    builtin::check(&job, set)?;
                }
                let dataset = self
                    .jobs
                    .datasets()
                    .resolve(&spec.workspace, &job.dataset)?;
                job.dataset = dataset.reference();
                job.register_as = None;
                inputs.push(dataset.reference());
                Job::Builtin(job)
            }
            Job::Script(job) => {
                if job.command.is_empty() {
                    return Err(TrackingError::invalid(
                        "a script sweep needs a command: --dir ./src -- python train.py --lr '${{params.lr}}'",
                    ));
                }
                if !self.jobs.artifacts().contains(&job.source_digest) {
                    return Err(TrackingError::not_found(
                        "source snapshot",
                        &job.source_digest,
                    ));
                }
                // Every planned set must fill the command's placeholders.
                for set in &planned {
                    for arg in &job.command {
                        crate::jobs::substitute_params(arg, set)?;
                    }
                }
                Job::Script(job)
            }
        };

        let tracking = self.jobs.tracking();
        let experiment = tracking.ensure_experiment(&spec.workspace, &spec.experiment)?;
        let id = shoal_store::random_hex(8)?;
        let name = if spec.name.is_empty() {
            format!("sweep-{id}")
        } else {
            spec.name
        };
        let mut parent = NewRun::tracked(&spec.workspace, &experiment.id);
        parent.name = Some(name.clone());
        parent.sweep_id = Some(id.clone());
        parent.inputs = inputs;
        parent.tags = BTreeMap::from([
            ("shoal.sweep".to_string(), id.clone()),
            ("shoal.sweep.role".to_string(), "parent".to_string()),
        ]);
        parent.params = spec
            .space
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parent = tracking.create_run(parent)?;
        let sweep = Sweep {
            id: id.clone(),
            workspace: spec.workspace,
            experiment: experiment.name,
            name,
            status: SweepStatus::Running,
            parent_run_id: parent.id,
            space: spec.space,
            sampling,
            max_runs: spec.max_runs,
            concurrency: spec.concurrency.max(1),
            metric: spec.metric,
            goal,
            early_stop,
            job,
            compute: spec.compute,
            labels: spec.labels,
            register_best: spec.register_best,
            planned,
            child_runs: Vec::new(),
            best_run_id: None,
            best_value: None,
            registered: None,
            created_ms: shoal_store::now_ms(),
            error: None,
        };
        self.records.put(SWEEPS_TREE, &id, &sweep)?;
        self.records.put_bytes(RUNNING_SWEEPS_TREE, &id, b"")?;
        self.records.flush()?;
        tracing::info!(sweep = %id, runs = sweep.planned.len(), "sweep submitted");
        // Wake the controller.
        tracking.update_run(&sweep.parent_run_id, |_| Ok(()))?;
        Ok(sweep)
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, id: &str) -> TrackingResult<Sweep> {
        sweep_record(&self.records, id)
    }

    /// # Errors
    /// Storage errors.
    pub fn list(&self, workspace: &str) -> TrackingResult<Vec<Sweep>> {
        let mut sweeps: Vec<Sweep> = self
            .records
            .scan::<Sweep>(SWEEPS_TREE, "")?
            .into_iter()
            .filter(|s| s.workspace == workspace)
            .collect();
        sweeps.sort_by_key(|s| s.created_ms);
        Ok(sweeps)
    }

    /// Drives running sweeps until `cancel`.
    pub async fn run_controller(self, cancel: CancellationToken) {
        let mut changes = self.jobs.tracking().subscribe();
        let mut tick = tokio::time::interval(CONTROLLER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
            let sweeps = self.clone();
            let stepped = tokio::task::spawn_blocking(move || sweeps.step_all()).await;
            match stepped {
                Ok(Ok(finished)) => {
                    for sweep in finished {
                        self.finish(sweep).await;
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "sweep controller step failed"),
                Err(error) => tracing::warn!(%error, "sweep controller task failed"),
            }
        }
    }

    /// Starts children where there is room; returns the sweeps whose children have all ended.
    fn step_all(&self) -> TrackingResult<Vec<Sweep>> {
        let mut finished = Vec::new();
        for id in self.records.keys(RUNNING_SWEEPS_TREE, "")? {
            let Some(sweep) = self.records.get::<Sweep>(SWEEPS_TREE, &id)? else {
                self.records.delete(RUNNING_SWEEPS_TREE, &id)?;
                continue;
            };
            if sweep.status != SweepStatus::Running {
                self.records.delete(RUNNING_SWEEPS_TREE, &id)?;
                continue;
            }
            match self.step(sweep) {
                Ok(Some(done)) => finished.push(done),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "sweep step failed"),
            }
        }
        Ok(finished)
    }

    fn step(&self, sweep: Sweep) -> TrackingResult<Option<Sweep>> {
        let tracking = self.jobs.tracking();
        let parent = tracking.run(&sweep.parent_run_id)?;
        let mut children = Vec::new();
        for id in &sweep.child_runs {
            children.push(tracking.run(id)?);
        }
        if parent.status == RunStatus::Canceled || parent.cancel_requested {
            for child in children.iter().filter(|c| !c.status.is_terminal()) {
                self.jobs.cancel(&child.id, "the sweep was canceled")?;
            }
            let sweep = self.update(&sweep.id, |s| {
                s.status = SweepStatus::Canceled;
                s.error = Some("canceled by a user".into());
            })?;
            tracking.finish_run(
                &parent.id,
                RunStatus::Canceled,
                None,
                Some("canceled by a user".into()),
                Vec::new(),
            )?;
            let _ = sweep;
            return Ok(None);
        }
        let active = children.iter().filter(|c| !c.status.is_terminal()).count();
        let room = (sweep.concurrency as usize).saturating_sub(active);
        let next = sweep.child_runs.len();
        if next >= sweep.planned.len() {
            return Ok((active == 0).then_some(sweep));
        }
        let mut started = Vec::new();
        for (index, params) in sweep.planned.iter().enumerate().skip(next).take(room) {
            let run = self.jobs.submit(Submission {
                workspace: sweep.workspace.clone(),
                experiment: sweep.experiment.clone(),
                name: Some(format!("{}-{}", sweep.name, index + 1)),
                params: params.clone(),
                tags: BTreeMap::from([("shoal.sweep.role".to_string(), "child".to_string())]),
                compute: sweep.compute,
                labels: sweep.labels.clone(),
                job: sweep.job.clone(),
                parent_run_id: Some(sweep.parent_run_id.clone()),
                sweep_id: Some(sweep.id.clone()),
            })?;
            started.push(run.id);
        }
        if !started.is_empty() {
            self.update(&sweep.id, |s| s.child_runs.extend(started.iter().cloned()))?;
        }
        Ok(None)
    }

    /// Picks the best completed child, logs it on the parent, registers it if asked, and
    /// ends the sweep.
    async fn finish(&self, sweep: Sweep) {
        let outcome = self.finish_inner(&sweep).await;
        let tracking = self.jobs.tracking();
        if let Err(error) = outcome {
            tracing::warn!(sweep = %sweep.id, %error, "sweep failed");
            let message = error.to_string();
            let _ = self.update(&sweep.id, |s| {
                s.status = SweepStatus::Failed;
                s.error = Some(message.clone());
            });
            let _ = tracking.finish_run(
                &sweep.parent_run_id,
                RunStatus::Failed,
                None,
                Some(message),
                Vec::new(),
            );
        }
    }

    async fn finish_inner(&self, sweep: &Sweep) -> TrackingResult<()> {
        let tracking = self.jobs.tracking();
        let mut children: Vec<Run> = Vec::new();
        for id in &sweep.child_runs {
            children.push(tracking.run(id)?);
        }
        let best = best_run(
            sweep.goal,
            children
                .iter()
                .filter(|c| c.status == RunStatus::Completed)
                .map(|c| (c, c.metrics.get(&sweep.metric).map(|m| m.value))),
        );
        let Some((best, value)) = best else {
            return Err(TrackingError::FailedPrecondition(format!(
                "no child run completed with metric '{}'",
                sweep.metric
            )));
        };
        let best = best.clone();
        let mut registered = None;
        if let Some(name) = &sweep.register_best {
            tracking
                .artifact(&format!("{}/outputs/model.onnx", best.artifact_root()))
                .map_err(|_| {
                    TrackingError::FailedPrecondition(format!(
                        "the best run {} wrote no outputs/model.onnx to register as '{name}'",
                        best.id
                    ))
                })?;
            let version = self
                .jobs
                .register_run_output(&best, "outputs/model.onnx", name, "")
                .await?;
            registered = Some(format!("{}@{}", version.model, version.version));
        }
        let now = shoal_store::now_ms();
        tracking.log_metrics(
            &sweep.parent_run_id,
            &[(
                sweep.metric.clone(),
                MetricPoint {
                    value,
                    step: 0,
                    timestamp_ms: now,
                },
            )],
        )?;
        let mut tags = vec![("shoal.sweep.best_run".to_string(), best.id.clone())];
        if let Some(reference) = &registered {
            tags.push(("shoal.sweep.registered".to_string(), reference.clone()));
        }
        tracking.set_tags(&sweep.parent_run_id, &tags)?;
        if let Some(reference) = &registered {
            tracking.update_run(&sweep.parent_run_id, |r| {
                r.outputs.push(reference.clone());
                Ok(())
            })?;
        }
        let (best_id, registered_ref) = (best.id.clone(), registered.clone());
        self.update(&sweep.id, |s| {
            s.status = SweepStatus::Completed;
            s.best_run_id = Some(best_id.clone());
            s.best_value = Some(value);
            s.registered = registered_ref.clone();
        })?;
        tracking.finish_run(
            &sweep.parent_run_id,
            RunStatus::Completed,
            None,
            None,
            Vec::new(),
        )?;
        tracing::info!(sweep = %sweep.id, best = %best.id, value, "sweep completed");
        Ok(())
    }

    fn update(&self, id: &str, change: impl Fn(&mut Sweep)) -> TrackingResult<Sweep> {
        let sweep = self
            .records
            .update::<Sweep, TrackingError>(SWEEPS_TREE, id, |current| {
                let mut sweep = current.ok_or_else(|| TrackingError::not_found("sweep", id))?;
                change(&mut sweep);
                Ok(sweep)
            })?;
        if sweep.status != SweepStatus::Running {
            self.records.delete(RUNNING_SWEEPS_TREE, id)?;
        }
        self.records.flush()?;
        Ok(sweep)
    }
}

fn sweep_record(records: &Records, id: &str) -> TrackingResult<Sweep> {
    records
        .get(SWEEPS_TREE, id)?
        .ok_or_else(|| TrackingError::not_found("sweep", id))
}

/// The primary metric's intermediate values of a sweep's children.
fn history(tracking: &Tracking, sweep: &Sweep) -> TrackingResult<MetricHistory> {
    let mut history = MetricHistory::new(sweep.metric.clone());
    for id in &sweep.child_runs {
        for point in tracking.metric_history(id, &sweep.metric)? {
            if point.step >= 0 {
                history.record(id, point.step as u64, point.value);
            }
        }
    }
    Ok(history)
}

/// The early-termination hook the jobs layer calls after each epoch of a sweep's child.
struct SweepAdvisor {
    records: Records,
    tracking: Tracking,
}

impl StopAdvisor for SweepAdvisor {
    fn should_stop(&self, run: &Run, step: i64) -> Option<String> {
        let sweep_id = run.sweep_id.as_ref()?;
        let sweep = sweep_record(&self.records, sweep_id).ok()?;
        if matches!(sweep.early_stop, EarlyStop::None) || step < 0 {
            return None;
        }
        let history = history(&self.tracking, &sweep).ok()?;
        let decision = sweep
            .early_stop
            .should_stop(sweep.goal, &history, &run.id, step as u64);
        decision.stop.then_some(decision.reason)
    }
}

pub fn sweep_to_wire(s: Sweep) -> shoal_proto::training::Sweep {
    shoal_proto::training::Sweep {
        id: s.id,
        workspace: s.workspace,
        experiment: s.experiment,
        name: s.name,
        status: s.status.as_str().into(),
        parent_run_id: s.parent_run_id,
        space: s.space.into_iter().collect(),
        sampling: s.sampling.to_string(),
        max_runs: s.max_runs,
        concurrency: s.concurrency,
        metric: s.metric,
        goal: s.goal.to_string(),
        early_stop: s.early_stop.to_string(),
        child_runs: s.child_runs,
        best_run_id: s.best_run_id.unwrap_or_default(),
        best_value: s.best_value,
        registered: s.registered.unwrap_or_default(),
        created_at_ms: s.created_ms,
        error: s.error.unwrap_or_default(),
    }
}

impl shoal_store::workspace::WorkspaceContents for Sweeps {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let count = self.list(workspace)?.len();
        Ok(shoal_store::held_count(count, "sweep")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        for sweep in self.list(workspace)? {
            self.records.delete(RUNNING_SWEEPS_TREE, &sweep.id)?;
            self.records.delete(SWEEPS_TREE, &sweep.id)?;
        }
        Ok(())
    }
}
