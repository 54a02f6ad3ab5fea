//! Remote workers: leasing queued `worker` runs with what the worker needs to execute them,
//! reports (progress and heartbeat), and completion, where a built-in run's model is
//! registered before the run counts as completed.

use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{BuiltinJob, Compute, Job, MetricPoint, Run, RunStatus};

use super::{builtin, local, Jobs, Outcome};

/// A leased run and what its worker needs to execute it.
#[derive(Debug, Clone)]
pub enum LeasedWork {
    /// A script: download the snapshot, run the command with this environment.
    Script {
        run: Run,
        command: Vec<String>,
        env: Vec<(String, String)>,
        source_digest: String,
        source_bytes: u64,
    },
    /// A built-in trainer: download the dataset's CSV and train on it.
    Builtin {
        run: Run,
        job: BuiltinJob,
        dataset_digest: String,
        dataset_bytes: u64,
    },
}

impl Jobs {
    /// Leases the oldest queued `worker` run whose labels the worker has, if any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn lease(&self, worker_id: &str, labels: &[String]) -> TrackingResult<Option<Run>> {
        for run in self.inner.tracking.queued_runs(Compute::Worker)? {
            if !run.labels.iter().all(|l| labels.contains(l)) {
                continue;
            }
            if let Some(run) = self.claim(&run.id, worker_id)? {
                tracing::info!(run = %run.id, worker = %worker_id, "run leased");
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// The run a worker holds; refuses a worker that does not hold it (any more).
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` when the run is another executor's or has ended.
    pub fn leased_run(&self, run_id: &str, worker_id: &str) -> TrackingResult<Run> {
        let run = self.inner.tracking.run(run_id)?;
        if run.executor.as_deref() != Some(worker_id) {
            return Err(TrackingError::FailedPrecondition(format!(
                "run {run_id} is not leased to worker {worker_id}"
            )));
        }
        Ok(run)
    }

    /// A worker's report: progress plus a heartbeat. Returns whether the worker should stop
    /// the run (canceled, or no longer its run).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn worker_report(
        &self,
        run_id: &str,
        worker_id: &str,
        lines: &[(i64, String)],
        metrics: &[(String, MetricPoint)],
    ) -> TrackingResult<bool> {
        let run = match self.leased_run(run_id, worker_id) {
            Ok(run) => run,
            Err(TrackingError::FailedPrecondition(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        if run.status.is_terminal() {
            return Ok(true);
        }
        self.record_progress(run_id, lines, metrics)?;
        let run = self.inner.tracking.update_run(run_id, |run| {
            run.heartbeat_ms = Some(shoal_store::now_ms());
            Ok(())
        })?;
        Ok(run.cancel_requested)
    }

    /// Leases the next run a worker can execute, with what it needs. A run that cannot
    /// execute (its dataset is gone, nothing to run) is failed with the reason, and the next
    /// one is tried.
    ///
    /// # Errors
    /// Storage errors.
    pub fn lease_work(
        &self,
        worker_id: &str,
        labels: &[String],
    ) -> TrackingResult<Option<LeasedWork>> {
        while let Some(run) = self.lease(worker_id, labels)? {
            let work = match run.job.clone() {
                Some(Job::Script(job)) => {
                    let endpoints = self.endpoints();
                    let token = match self.issue_run_token(&run) {
                        Ok(token) => token,
                        Err(error) => {
                            let reason = format!("cannot mint the run's token: {error}");
                            self.finish(&run, Outcome::Exited(-1), vec![reason])?;
                            continue;
                        }
                    };
                    let own = match self.script_env(&run, &job) {
                        Ok(env) => env,
                        Err(error) => {
                            let reason = format!("the run cannot start: {error}");
                            self.finish(&run, Outcome::Exited(-1), vec![reason])?;
                            continue;
                        }
                    };
                    let env = local::run_environment(
                        &run,
                        &endpoints.grpc_url,
                        &endpoints.http_url,
                        &token,
                        &own,
                    );
                    LeasedWork::Script {
                        command: job.command,
                        env,
                        source_digest: job.source_digest,
                        source_bytes: job.source_bytes,
                        run,
                    }
                }
                Some(Job::Builtin(job)) => {
                    match self.datasets().resolve(&run.workspace, &job.dataset) {
                        Ok(dataset) => LeasedWork::Builtin {
                            dataset_digest: dataset.digest,
                            dataset_bytes: dataset.size_bytes,
                            job,
                            run,
                        },
                        Err(error) => {
                            let reason = format!("the run's dataset is gone: {error}");
                            self.finish(&run, Outcome::Exited(-1), vec![reason])?;
                            continue;
                        }
                    }
                }
                None => {
                    let reason = "the run has nothing to execute".to_string();
                    self.finish(&run, Outcome::Exited(-1), vec![reason])?;
                    continue;
                }
            };
            return Ok(Some(work));
        }
        Ok(None)
    }

    /// The blob a worker downloads for a run: a script's source snapshot, or a built-in
    /// job's dataset.
    ///
    /// # Errors
    /// `NotFound` for the dataset; `FailedPrecondition` for a run with nothing to execute.
    pub fn run_input_digest(&self, run: &Run) -> TrackingResult<String> {
        match &run.job {
            Some(Job::Script(job)) => Ok(job.source_digest.clone()),
            Some(Job::Builtin(job)) => Ok(self
                .datasets()
                .resolve(&run.workspace, &job.dataset)?
                .digest),
            None => Err(TrackingError::FailedPrecondition(format!(
                "run {} has no input: it executes nothing",
                run.id
            ))),
        }
    }

    /// Ends a leased run with the worker's outcome. A built-in run that finished and asks to
    /// be registered registers its uploaded model first; if that fails, the run fails saying
    /// why.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` for a worker that does not hold the run.
    pub async fn worker_complete(
        &self,
        run_id: &str,
        worker_id: &str,
        outcome: Outcome,
        log_tail: Vec<String>,
    ) -> TrackingResult<Run> {
        let run = self.leased_run(run_id, worker_id)?;
        if let (Outcome::Exited(0), Some(Job::Builtin(job))) = (outcome, &run.job) {
            if let Some(name) = &job.register_as {
                if let Err(error) = builtin::register_output(self, &run, name).await {
                    self.revoke_run_token(&run.id);
                    return self.tracking().finish_run(
                        &run.id,
                        RunStatus::Failed,
                        Some(0),
                        Some(format!(
                            "training finished, but registering '{name}' failed: {error}"
                        )),
                        log_tail,
                    );
                }
            }
        }
        self.finish(&run, outcome, log_tail)
    }
}
