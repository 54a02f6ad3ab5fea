//! Runs that execute: submission, the queue, the `local` compute target, remote workers
//! ([`lease`]).
//!
//! A submitted run is `queued` with a [`Job`]. The scheduler ([`Jobs::run_scheduler`]) hands
//! `local` runs to this host, at most `local_run_concurrency` at once: scripts run as
//! subprocesses in their own process group and folder ([`local`]), built-in trainers on a
//! blocking thread ([`builtin`]). `worker` runs wait for a remote worker to lease them over
//! gRPC ([`Jobs::lease`]); the worker reports logs and metrics, which double as heartbeats,
//! and a run whose worker stays silent past the heartbeat timeout is failed by
//! [`Jobs::reap_lost_runs`], never left running forever.
//!
//! Cancelling a queued run ends it at once; a running one is asked to stop: its process
//! group gets SIGTERM and then SIGKILL (locally), or the worker learns it from its next
//! report.

pub mod builtin;
pub mod lease;
pub mod local;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dataset::Datasets;
use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{ArtifactEntry, Compute, Job, MetricPoint, NewRun, Run, RunStatus, Tracking};
use shoal_registry::registry::Registry;
use shoal_store::artifacts::ArtifactStore;
use shoal_store::Vault;

/// Lines of a failed run's log kept on the run record.
pub const LOG_TAIL_LINES: usize = 50;

/// How often the scheduler looks at the queue when nothing wakes it.
const SCHEDULER_TICK: Duration = Duration::from_millis(500);

/// What a run is submitted with.
#[derive(Debug, Clone)]
pub struct Submission {
    pub workspace: String,
    pub experiment: String,
    pub name: Option<String>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub compute: Compute,
    pub labels: Vec<String>,
    pub job: Job,
    pub parent_run_id: Option<String>,
    pub sweep_id: Option<String>,
}

/// Decides whether a running built-in run should stop early (sweeps implement it).
pub trait StopAdvisor: Send + Sync {
    /// Called after each epoch's metrics are logged; `Some(reason)` stops the run.
    fn should_stop(&self, run: &Run, step: i64) -> Option<String>;
}

/// How the hub reaches itself, for the environment of script runs.
#[derive(Debug, Clone, Default)]
pub struct HubEndpoints {
    /// `http://127.0.0.1:7070`.
    pub grpc_url: String,
    /// `http://127.0.0.1:7080`: `MLFLOW_TRACKING_URI`.
    pub http_url: String,
}

/// Mints and revokes the token a script run acts with (`SHOAL_TOKEN`,
/// `MLFLOW_TRACKING_TOKEN`): one that may log to that run and read its inputs, nothing else.
/// The hub implements it with its access domain.
pub trait RunCredentials: Send + Sync {
    /// A fresh token for `run`, replacing any earlier one of the same run.
    ///
    /// # Errors
    /// When the token cannot be stored (the run then fails to start, saying why).
    fn issue(&self, run: &Run) -> TrackingResult<String>;
    /// Revokes the token of a run that ended.
    fn revoke(&self, run_id: &str);
}

#[derive(Clone)]
pub struct Jobs {
    inner: Arc<JobsInner>,
}

struct JobsInner {
    tracking: Tracking,
    datasets: Datasets,
    registry: Registry,
    artifacts: ArtifactStore,
    /// Working folders of local runs: `{runs_dir}/{run_id}`.
    runs_dir: PathBuf,
    /// Folders script runs must not see (the hub's data folder), and whether a run is refused
    /// where the kernel cannot hide them.
    hidden: Vec<PathBuf>,
    sandbox_required: bool,
    endpoints: Mutex<HubEndpoints>,
    /// Mints run tokens; without it (unit tests) runs get no token.
    credentials: Mutex<Option<Arc<dyn RunCredentials>>>,
    local_concurrency: usize,
    heartbeat_timeout: Duration,
    max_upload_bytes: u64,
    /// Cancel handles of the runs this host executes now.
    local: Mutex<HashMap<String, CancellationToken>>,
    /// The tasks executing them, so shutdown can wait until each has recorded its end.
    tasks: TaskTracker,
    /// Fires when the hub shuts down, so long polls (a worker's lease) end at once.
    shutdown: CancellationToken,
    advisor: Mutex<Option<Arc<dyn StopAdvisor>>>,
    /// Where the secrets runs ask for (`--secret`) are read from.
    vault: Vault,
}

/// Settings the jobs layer takes from the hub's config.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Working folders of local runs; outside the hub's data folder.
    pub runs_dir: PathBuf,
    /// Folders hidden from script runs (the hub's data folder); other runs' folders are hidden
    /// from each run too.
    pub hidden: Vec<PathBuf>,
    /// Refuse to start script runs where the kernel cannot hide those folders.
    pub sandbox_required: bool,
    pub local_concurrency: usize,
    pub heartbeat_timeout: Duration,
    pub max_upload_bytes: u64,
}

impl Jobs {
    pub fn new(
        tracking: Tracking,
        datasets: Datasets,
        registry: Registry,
        artifacts: ArtifactStore,
        vault: Vault,
        config: JobsConfig,
    ) -> Jobs {
        Jobs {
            inner: Arc::new(JobsInner {
                tracking,
                datasets,
                registry,
                artifacts,
                runs_dir: config.runs_dir,
                hidden: config.hidden,
                sandbox_required: config.sandbox_required,
                endpoints: Mutex::new(HubEndpoints::default()),
                credentials: Mutex::new(None),
                local_concurrency: config.local_concurrency.max(1),
                heartbeat_timeout: config.heartbeat_timeout,
                max_upload_bytes: config.max_upload_bytes,
                local: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                advisor: Mutex::new(None),
                vault,
            }),
        }
    }

    pub fn tracking(&self) -> &Tracking {
        &self.inner.tracking
    }

    pub fn datasets(&self) -> &Datasets {
        &self.inner.datasets
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.max_upload_bytes
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        self.inner.heartbeat_timeout
    }

    /// Fires when the hub is shutting down.
    pub fn shutting_down(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Tells the jobs layer where the hub listens, once its sockets are bound.
    pub fn set_endpoints(&self, endpoints: HubEndpoints) {
        *lock(&self.inner.endpoints) = endpoints;
    }

    pub fn endpoints(&self) -> HubEndpoints {
        lock(&self.inner.endpoints).clone()
    }

    /// Installs what mints and revokes run tokens.
    pub fn set_run_credentials(&self, credentials: Arc<dyn RunCredentials>) {
        *lock(&self.inner.credentials) = Some(credentials);
    }

    /// Mints the token a starting run acts with (empty when no minter is installed).
    ///
    /// # Errors
    /// When the token cannot be stored.
    pub fn issue_run_token(&self, run: &Run) -> TrackingResult<String> {
        let credentials = lock(&self.inner.credentials).clone();
        match credentials {
            Some(credentials) => credentials.issue(run),
            None => Ok(String::new()),
        }
    }

    /// Revokes the token of a run that ended.
    fn revoke_run_token(&self, run_id: &str) {
        let credentials = lock(&self.inner.credentials).clone();
        if let Some(credentials) = credentials {
            credentials.revoke(run_id);
        }
    }

    /// Installs the early-termination hook (the sweep controller).
    pub fn set_stop_advisor(&self, advisor: Arc<dyn StopAdvisor>) {
        *lock(&self.inner.advisor) = Some(advisor);
    }

    fn advisor(&self) -> Option<Arc<dyn StopAdvisor>> {
        lock(&self.inner.advisor).clone()
    }

    /// Queues a run.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty command, an unknown trainer or bad params, a built-in
    /// run on a remote worker; `NotFound` for the dataset or the source snapshot.
    pub fn submit(&self, submission: Submission) -> TrackingResult<Run> {
        let tracking = &self.inner.tracking;
        let experiment =
            tracking.ensure_experiment(&submission.workspace, &submission.experiment)?;
        let mut inputs = Vec::new();
        let job = match submission.job {
            Job::Builtin(mut job) => {
                builtin::check(&job, &submission.params)?;
                let dataset = self
                    .inner
                    .datasets
                    .resolve(&submission.workspace, &job.dataset)?;
                let columns: Vec<&str> = dataset
                    .profile
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                for column in std::iter::once(&job.target).chain(job.features.iter()) {
                    if !columns.contains(&column.as_str()) {
                        return Err(TrackingError::invalid(format!(
                            "dataset {} has no column '{column}'; it has {columns:?}",
                            dataset.reference()
                        )));
                    }
                }
                // Built-in trainers take numeric features; say so now, not after queueing.
                let categorical: Vec<&str> = dataset
                    .profile
                    .columns
                    .iter()
                    .filter(|c| {
                        c.name != job.target
                            && (job.features.is_empty() || job.features.contains(&c.name))
                            && matches!(c.kind, shoal_drift::FeatureKind::Categorical(_))
                    })
                    .map(|c| c.name.as_str())
                    .collect();
                if !categorical.is_empty() {
                    let numeric: Vec<&str> = dataset
                        .profile
                        .columns
                        .iter()
                        .filter(|c| {
                            c.name != job.target
                                && matches!(c.kind, shoal_drift::FeatureKind::Numeric(_))
                        })
                        .map(|c| c.name.as_str())
                        .collect();
                    return Err(TrackingError::invalid(format!(
                        "built-in trainers take numeric features, and {categorical:?} of {} are categorical; pick features with --features {}",
                        dataset.reference(),
                        numeric.join(",")
                    )));
                }
                job.dataset = dataset.reference();
                inputs.push(dataset.reference());
                Job::Builtin(job)
            }
            Job::Script(mut job) => {
                if job.command.is_empty() || job.command[0].trim().is_empty() {
                    return Err(TrackingError::invalid(
                        "a script run needs a command: shoal run submit --dir ./src -- python train.py",
                    ));
                }
                job.command = job
                    .command
                    .iter()
                    .map(|arg| substitute_params(arg, &submission.params))
                    .collect::<TrackingResult<_>>()?;
                self.check_secrets(&submission.workspace, &job)?;
                if !self.inner.artifacts.contains(&job.source_digest) {
                    return Err(TrackingError::not_found(
                        "source snapshot",
                        &job.source_digest,
                    ));
                }
                Job::Script(job)
            }
        };
        let mut tags = submission.tags;
        if let Some(sweep) = &submission.sweep_id {
            tags.insert("shoal.sweep".into(), sweep.clone());
        }
        if let Some(parent) = &submission.parent_run_id {
            tags.insert("mlflow.parentRunId".into(), parent.clone());
        }
        let run = tracking.create_run(NewRun {
            workspace: submission.workspace,
            experiment_id: experiment.id,
            name: submission.name,
            status: RunStatus::Queued,
            start_ms: None,
            params: submission.params,
            tags,
            compute: submission.compute,
            labels: submission.labels,
            job: Some(job),
            parent_run_id: submission.parent_run_id,
            sweep_id: submission.sweep_id,
            inputs,
            user: String::new(),
        })?;
        tracking.flush()?;
        Ok(run)
    }

    /// Cancels a run: a queued one ends now, a running one is asked to stop.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn cancel(&self, run_id: &str, reason: &str) -> TrackingResult<Run> {
        let run = self.inner.tracking.update_run(run_id, |run| {
            match run.status {
                RunStatus::Queued => {
                    run.status = RunStatus::Canceled;
                    run.ended_ms = Some(shoal_store::now_ms());
                    run.error = Some(reason.to_string());
                }
                RunStatus::Running => {
                    run.cancel_requested = true;
                    if run.error.is_none() {
                        run.error = Some(reason.to_string());
                    }
                    // A run nobody executes (an MLflow client's) ends at once.
                    if run.executor.is_none() {
                        run.status = RunStatus::Canceled;
                        run.ended_ms = Some(shoal_store::now_ms());
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        if let Some(token) = lock(&self.inner.local).get(run_id) {
            token.cancel();
        }
        tracing::info!(run = %run_id, %reason, "run cancel requested");
        Ok(run)
    }

    /// Fails running runs whose executor is gone: a worker silent past the heartbeat timeout,
    /// or `local` runs this hub process does not know (it restarted under them).
    ///
    /// # Errors
    /// Storage errors.
    pub fn reap_lost_runs(&self, now_ms: i64) -> TrackingResult<Vec<String>> {
        let timeout_ms = self.inner.heartbeat_timeout.as_millis() as i64;
        let mut reaped = Vec::new();
        for run in self.inner.tracking.running_runs()? {
            let Some(executor) = run.executor.as_deref() else {
                continue;
            };
            let reason = if executor == "local" {
                if lock(&self.inner.local).contains_key(&run.id) {
                    continue;
                }
                let record = self
                    .inner
                    .runs_dir
                    .join(&run.id)
                    .join(shoal_compute::GROUP_FILE);
                if let Ok(true) = shoal_compute::kill_leftover_group(&record) {
                    tracing::warn!(run = %run.id, "killed the processes of a run the hub restarted under");
                }
                "the hub restarted while the run was running".to_string()
            } else {
                let last = run
                    .heartbeat_ms
                    .or(run.started_ms)
                    .unwrap_or(run.created_ms);
                if now_ms - last <= timeout_ms {
                    continue;
                }
                format!(
                    "worker {executor} stopped reporting: no heartbeat for {} s (timeout {} s)",
                    (now_ms - last) / 1000,
                    timeout_ms / 1000
                )
            };
            let tail = self
                .inner
                .tracking
                .log_tail(&run.id, LOG_TAIL_LINES)
                .unwrap_or_default();
            self.inner.tracking.finish_run(
                &run.id,
                RunStatus::Failed,
                None,
                Some(reason.clone()),
                tail,
            )?;
            self.revoke_run_token(&run.id);
            tracing::warn!(run = %run.id, %reason, "run failed: executor lost");
            reaped.push(run.id);
        }
        Ok(reaped)
    }

    /// Hands queued `local` runs to this host until `cancel`, and reaps lost runs.
    pub async fn run_scheduler(self, cancel: CancellationToken) {
        let mut changes = self.inner.tracking.subscribe();
        let mut tick = tokio::time::interval(SCHEDULER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reaped_at = 0i64;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
            let now = shoal_store::now_ms();
            if now - reaped_at >= 1000 {
                reaped_at = now;
                let jobs = self.clone();
                match tokio::task::spawn_blocking(move || jobs.reap_lost_runs(now)).await {
                    Ok(Err(error)) => tracing::warn!(%error, "cannot reap lost runs"),
                    Err(error) => tracing::warn!(%error, "reaper task failed"),
                    Ok(Ok(_)) => {}
                }
            }
            if let Err(error) = self.start_local_runs(&cancel) {
                tracing::warn!(%error, "cannot start queued runs");
            }
        }
        // Shutting down: stop what this host runs and wait until each run has recorded its
        // end (canceled, saying why); the hub's shutdown grace bounds the wait.
        self.inner.shutdown.cancel();
        let running: Vec<(String, CancellationToken)> = lock(&self.inner.local)
            .iter()
            .map(|(id, token)| (id.clone(), token.clone()))
            .collect();
        for (id, token) in running {
            let _ = self.inner.tracking.update_run(&id, |run| {
                if !run.status.is_terminal() && run.error.is_none() {
                    run.error = Some("the hub shut down while the run was running".into());
                }
                Ok(())
            });
            token.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn start_local_runs(&self, shutdown: &CancellationToken) -> TrackingResult<()> {
        let free = self
            .inner
            .local_concurrency
            .saturating_sub(lock(&self.inner.local).len());
        if free == 0 {
            return Ok(());
        }
        for run in self
            .inner
            .tracking
            .queued_runs(Compute::Local)?
            .into_iter()
            .take(free)
        {
            let Some(run) = self.claim(&run.id, "local")? else {
                continue;
            };
            let token = shutdown.child_token();
            lock(&self.inner.local).insert(run.id.clone(), token.clone());
            let jobs = self.clone();
            self.inner.tasks.spawn(async move {
                let run_id = run.id.clone();
                let result = match run.job.clone() {
                    Some(Job::Script(job)) => local::execute(&jobs, &run, &job, token).await,
                    Some(Job::Builtin(job)) => builtin::execute(&jobs, &run, &job, token).await,
                    None => Err(TrackingError::Internal("a queued run without a job".into())),
                };
                if let Err(error) = result {
                    tracing::warn!(run = %run_id, %error, "run failed to execute");
                    let tail = jobs
                        .inner
                        .tracking
                        .log_tail(&run_id, LOG_TAIL_LINES)
                        .unwrap_or_default();
                    let _ = jobs.inner.tracking.finish_run(
                        &run_id,
                        RunStatus::Failed,
                        None,
                        Some(error.to_string()),
                        tail,
                    );
                }
                jobs.revoke_run_token(&run_id);
                lock(&jobs.inner.local).remove(&run_id);
            });
        }
        Ok(())
    }

    /// Moves a queued run to running for `executor`; `None` if someone else took it first or
    /// it was canceled meanwhile.
    fn claim(&self, run_id: &str, executor: &str) -> TrackingResult<Option<Run>> {
        let mut claimed = false;
        let run = self.inner.tracking.update_run(run_id, |run| {
            claimed = run.status == RunStatus::Queued;
            if claimed {
                let now = shoal_store::now_ms();
                run.status = RunStatus::Running;
                run.executor = Some(executor.to_string());
                run.started_ms = Some(now);
                run.heartbeat_ms = Some(now);
            }
            Ok(())
        })?;
        Ok(claimed.then_some(run))
    }

    /// Logs what an executor reported: log lines and metric points.
    ///
    /// # Errors
    /// Storage errors.
    pub fn record_progress(
        &self,
        run_id: &str,
        lines: &[(i64, String)],
        metrics: &[(String, MetricPoint)],
    ) -> TrackingResult<()> {
        self.inner.tracking.append_log(run_id, lines)?;
        if let Some(run) = self.inner.tracking.log_metrics(run_id, metrics)? {
            self.consider_early_stop(&run, metrics)?;
        }
        Ok(())
    }

    /// A script run of a sweep that just reported metrics: ask the sweep's early termination
    /// policy about the latest step, and cancel the run if it says stop. (Built-in runs ask
    /// after each epoch themselves.)
    fn consider_early_stop(
        &self,
        run: &Run,
        metrics: &[(String, MetricPoint)],
    ) -> TrackingResult<()> {
        if run.sweep_id.is_none() || run.status.is_terminal() || run.cancel_requested {
            return Ok(());
        }
        let Some(step) = metrics.iter().map(|(_, p)| p.step).max() else {
            return Ok(());
        };
        let Some(advisor) = self.advisor() else {
            return Ok(());
        };
        let run_id = run.id.as_str();
        if let Some(reason) = advisor.should_stop(run, step) {
            self.inner
                .tracking
                .set_tags(run_id, &[("shoal.early_stopped".into(), "true".into())])?;
            self.inner.tracking.append_log(
                run_id,
                &[(
                    shoal_store::now_ms(),
                    format!("[shoal] early termination: {reason}"),
                )],
            )?;
            self.cancel(run_id, &format!("early termination: {reason}"))?;
        }
        Ok(())
    }

    /// Stores a file a run wrote under its artifact root.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad path.
    pub fn record_output(
        &self,
        run: &Run,
        relative_path: &str,
        digest: String,
        size_bytes: u64,
    ) -> TrackingResult<()> {
        let path = format!("{}/{relative_path}", run.artifact_root());
        self.inner
            .tracking
            .put_artifact(&path, &ArtifactEntry { digest, size_bytes })
    }

    /// Ends a run with an executor's outcome.
    ///
    /// # Errors
    /// Storage errors.
    pub fn finish(
        &self,
        run: &Run,
        outcome: Outcome,
        log_tail: Vec<String>,
    ) -> TrackingResult<Run> {
        let (status, code, error, tail) = match outcome {
            Outcome::Exited(0) => (RunStatus::Completed, Some(0), None, Vec::new()),
            Outcome::Exited(code) => (
                RunStatus::Failed,
                Some(code),
                Some(format!("the command exited with code {code}")),
                log_tail,
            ),
            Outcome::Signaled(signal) => (
                RunStatus::Failed,
                None,
                Some(format!("the command was killed by signal {signal}")),
                log_tail,
            ),
            // The reason the cancel recorded stays (see `Tracking::finish_run`).
            Outcome::Canceled => (RunStatus::Canceled, None, None, log_tail),
        };
        self.revoke_run_token(&run.id);
        self.inner
            .tracking
            .finish_run(&run.id, status, code, error, tail)
    }
}

impl Jobs {
    /// Checks that a run can serve as a retraining template: it exists in the workspace and
    /// says what it ran (a built-in trainer or a script).
    ///
    /// # Errors
    /// `NotFound` for the run; `InvalidArgument` for a run without a job (an MLflow client's).
    pub fn check_retrain_template(&self, workspace: &str, run_id: &str) -> TrackingResult<Run> {
        let run = self.inner.tracking.run(run_id)?;
        if run.workspace != workspace {
            return Err(TrackingError::not_found("run", run_id));
        }
        if run.job.is_none() {
            return Err(TrackingError::invalid(format!(
                "run {run_id} was not run by Shoal (no trainer or script to repeat); name a run submitted with shoal run submit"
            )));
        }
        Ok(run)
    }

    /// Starts the retraining an alert asks for: the template run's job again, with the same
    /// params, experiment and compute target. A built-in job trains on the latest version of
    /// its dataset (data registered since is what retraining is for) and registers under the
    /// same name, so the new version can be deployed like the last.
    ///
    /// # Errors
    /// What [`Jobs::check_retrain_template`] and [`Jobs::submit`] refuse.
    pub fn retrain(&self, template_id: &str, cause: &RetrainCause) -> TrackingResult<Run> {
        let template = self.check_retrain_template(&cause.workspace, template_id)?;
        let experiment = self.inner.tracking.experiment(&template.experiment_id)?;
        let job = match template.job.clone() {
            Some(Job::Builtin(mut job)) => {
                let (name, _) = crate::dataset::split_reference(&job.dataset);
                job.dataset = format!("{name}@latest");
                Job::Builtin(job)
            }
            Some(job) => job,
            None => return Err(TrackingError::invalid("the template run has no job")),
        };
        let tags = BTreeMap::from([
            ("shoal.retrain.of".to_string(), template.id.clone()),
            ("shoal.retrain.alert".to_string(), cause.alert_id.clone()),
            ("shoal.retrain.model".to_string(), cause.model.clone()),
        ]);
        self.submit(Submission {
            workspace: template.workspace.clone(),
            experiment: experiment.name,
            name: Some(format!(
                "retrain-{}",
                cause.alert_id.rsplit('-').next().unwrap_or(&cause.alert_id)
            )),
            params: template.params.clone(),
            tags,
            compute: template.compute,
            labels: template.labels.clone(),
            job,
            parent_run_id: None,
            sweep_id: None,
        })
    }
}

/// Why a retraining run starts: the drift alert that asked for it.
#[derive(Debug, Clone)]
pub struct RetrainCause {
    pub workspace: String,
    /// The alert's id, kept on the run as `shoal.retrain.alert`.
    pub alert_id: String,
    /// The model version that drifted, `name@version`, kept as `shoal.retrain.model`.
    pub model: String,
}

/// Replaces `${{params.NAME}}` in a command argument with the run's param, so one command
/// serves every run of a sweep: `python train.py --lr ${{params.lr}}`.
///
/// # Errors
/// `InvalidArgument` for an unknown param or an unclosed `${{`.
pub fn substitute_params(arg: &str, params: &BTreeMap<String, String>) -> TrackingResult<String> {
    const OPEN: &str = "${{";
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find("}}").ok_or_else(|| {
            TrackingError::invalid(format!(
                "command argument '{arg}' opens '${{{{' without closing '}}}}'"
            ))
        })?;
        let expression = after[..end].trim();
        let name = expression.strip_prefix("params.").ok_or_else(|| {
            TrackingError::invalid(format!(
                "command argument '{arg}': '${{{{{expression}}}}}' is not '${{{{params.NAME}}}}'"
            ))
        })?;
        let value = params.get(name).ok_or_else(|| {
            TrackingError::invalid(format!(
                "the command uses '${{{{params.{name}}}}}', but the run has no param '{name}' (it has {:?}); add --param {name}=…",
                params.keys().collect::<Vec<_>>()
            ))
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How an executed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    Canceled,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod substitution_tests {
    use super::*;

    #[test]
    fn params_are_substituted_into_commands() {
        let params = BTreeMap::from([
            ("lr".to_string(), "0.1".to_string()),
            ("hidden".to_string(), "16".to_string()),
        ]);
        assert_eq!(
            substitute_params("--lr=${{params.lr}}", &params).unwrap(),
            "--lr=0.1"
        );
        assert_eq!(
            substitute_params("${{ params.hidden }}x${{params.lr}}", &params).unwrap(),
            "16x0.1"
        );
        assert_eq!(
            substitute_params("plain $HOME {x}", &params).unwrap(),
            "plain $HOME {x}"
        );
        let unknown = substitute_params("${{params.epochs}}", &params).unwrap_err();
        assert!(
            unknown.to_string().contains("no param 'epochs'"),
            "{unknown}"
        );
        let unclosed = substitute_params("${{params.lr", &params).unwrap_err();
        assert!(
            unclosed.to_string().contains("without closing"),
            "{unclosed}"
        );
        let other = substitute_params("${{inputs.data}}", &params).unwrap_err();
        assert!(other.to_string().contains("is not"), "{other}");
    }
}
