//! Built-in trainer runs: a [`shoal_train`] trainer on a registered dataset, on a blocking
//! thread of the hub. Every epoch's figures are logged as metrics (step = epoch), the model
//! is stored as the run's `outputs/model.onnx`, and, when asked, registered with the
//! dataset's profile of its feature columns as the drift baseline.

use std::collections::BTreeMap;

use shoal_train::{JobError, JobSpec, Progress};
use tokio_util::sync::CancellationToken;

use super::{Jobs, Outcome};
use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{BuiltinJob, MetricPoint, Run, RunStatus};

/// The trainer's view of a built-in job.
pub fn job_spec(job: &BuiltinJob) -> JobSpec {
    JobSpec {
        trainer: job.trainer.clone(),
        target: job.target.clone(),
        features: job.features.clone(),
    }
}

/// Checks a built-in job before it is queued: a known trainer, params it accepts, a target.
///
/// # Errors
/// `InvalidArgument` naming the trainer or the param.
pub fn check(job: &BuiltinJob, params: &BTreeMap<String, String>) -> TrackingResult<()> {
    job_spec(job)
        .check(params)
        .map(drop)
        .map_err(|e| TrackingError::invalid(e.to_string()))
}

/// An epoch's figures as metric points (step = epoch).
pub fn metric_points(
    epoch: u32,
    metrics: Vec<(String, f64)>,
    now_ms: i64,
) -> Vec<(String, MetricPoint)> {
    metrics
        .into_iter()
        .map(|(name, value)| {
            let point = MetricPoint {
                value,
                step: i64::from(epoch),
                timestamp_ms: now_ms,
            };
            (name, point)
        })
        .collect()
}

/// Why training ended before its last epoch.
enum Interruption {
    Canceled,
    EarlyStop(String),
}

/// Executes a built-in run on this host.
///
/// # Errors
/// When the dataset cannot be read or training fails (the caller fails the run with the
/// message).
pub async fn execute(
    jobs: &Jobs,
    run: &Run,
    job: &BuiltinJob,
    cancel: CancellationToken,
) -> TrackingResult<()> {
    let dataset_version = jobs.datasets().resolve(&run.workspace, &job.dataset)?;
    let csv_path = jobs.datasets().local_path(&dataset_version).await?;
    let (worker_jobs, worker_run, worker_job) = (jobs.clone(), run.clone(), job.clone());
    let trained = tokio::task::spawn_blocking(move || -> TrackingResult<_> {
        let (jobs, run) = (worker_jobs, worker_run);
        let tracking = jobs.tracking();
        let log = |text: String| {
            let _ = tracking.append_log(&run.id, &[(shoal_store::now_ms(), text)]);
        };
        let advisor = jobs.advisor();
        let mut interruption = None;
        let trained = job_spec(&worker_job).train_csv(
            &csv_path,
            &run.params,
            &job_dataset(&run),
            |progress| match progress {
                Progress::Line(line) => {
                    log(line);
                    true
                }
                Progress::Epoch {
                    epoch,
                    metrics,
                    line,
                } => {
                    log(line);
                    let points = metric_points(epoch, metrics, shoal_store::now_ms());
                    if let Err(error) = tracking.log_metrics(&run.id, &points) {
                        tracing::warn!(run = %run.id, %error, "cannot log epoch metrics");
                    }
                    if cancel.is_cancelled() {
                        interruption = Some(Interruption::Canceled);
                        return false;
                    }
                    let reason = advisor.as_ref().and_then(|advisor| {
                        let current = tracking.run(&run.id).ok()?;
                        advisor.should_stop(&current, i64::from(epoch))
                    });
                    if let Some(reason) = reason {
                        log(format!("[shoal] early termination: {reason}"));
                        interruption = Some(Interruption::EarlyStop(reason));
                        return false;
                    }
                    true
                }
            },
        );
        let model = trained.map_err(|e| match e {
            JobError::Read { .. } => TrackingError::Internal(e.to_string()),
            other => TrackingError::invalid(other.to_string()),
        })?;
        Ok((model, interruption))
    })
    .await
    .map_err(|e| TrackingError::Internal(format!("training task: {e}")))??;
    let (model, interruption) = trained;

    let tracking = jobs.tracking();
    let onnx = model.to_onnx();
    let mut writer = jobs.artifacts().writer().await?;
    writer.write(&onnx).await?;
    let (digest, size) = writer.finish().await?;
    jobs.record_output(run, "outputs/model.onnx", digest.clone(), size)?;
    let mut tags = vec![
        (
            "shoal.task".to_string(),
            format!("{:?}", model.task).to_lowercase(),
        ),
        ("shoal.rows_train".to_string(), model.rows_train.to_string()),
        (
            "shoal.rows_validation".to_string(),
            model.rows_validation.to_string(),
        ),
        (
            "shoal.rows_skipped".to_string(),
            model.rows_skipped.to_string(),
        ),
        ("shoal.features".to_string(), model.feature_names.join(",")),
    ];
    if let Some(classes) = &model.classes {
        tags.push(("shoal.classes".to_string(), classes.join(",")));
    }
    tracking.set_tags(&run.id, &tags)?;

    match interruption {
        Some(Interruption::Canceled) => {
            jobs.finish(run, Outcome::Canceled, Vec::new())?;
            return Ok(());
        }
        Some(Interruption::EarlyStop(reason)) => {
            tracking.set_tags(&run.id, &[("shoal.early_stopped".into(), "true".into())])?;
            tracking.finish_run(
                &run.id,
                RunStatus::Canceled,
                None,
                Some(format!("early termination: {reason}")),
                Vec::new(),
            )?;
            return Ok(());
        }
        None => {}
    }
    if let Some(name) = &job.register_as {
        register_output(jobs, run, name).await?;
    }
    jobs.finish(run, Outcome::Exited(0), Vec::new())?;
    Ok(())
}

fn job_dataset(run: &Run) -> String {
    run.inputs.first().cloned().unwrap_or_default()
}

/// The feature columns a built-in job trained on: the job's, or every column of its dataset
/// but the target, in header order (what the trainer takes when none are named).
///
/// # Errors
/// `NotFound` for the dataset.
pub fn job_features(jobs: &Jobs, run: &Run, job: &BuiltinJob) -> TrackingResult<Vec<String>> {
    if !job.features.is_empty() {
        return Ok(job.features.clone());
    }
    let dataset = jobs.datasets().resolve(&run.workspace, &job.dataset)?;
    Ok(dataset
        .profile
        .columns
        .iter()
        .filter(|c| c.name != job.target)
        .map(|c| c.name.clone())
        .collect())
}

/// Registers the `outputs/model.onnx` a built-in run stored (here or on a worker) as
/// `name`, and says so in the run's log. Returns `name@version`.
///
/// # Errors
/// `NotFound` when the run stored no model; what the registry refuses.
pub async fn register_output(jobs: &Jobs, run: &Run, name: &str) -> TrackingResult<String> {
    let version = jobs
        .register_run_output(run, "outputs/model.onnx", name, "")
        .await?;
    let reference = format!("{}@{}", version.model, version.version);
    jobs.tracking().append_log(
        &run.id,
        &[(
            shoal_store::now_ms(),
            format!("[shoal] registered {reference}"),
        )],
    )?;
    Ok(reference)
}
