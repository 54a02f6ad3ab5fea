//! Built-in trainer runs: a [`shoal_train`] trainer on a registered dataset, on a blocking
//! thread of the hub. Every epoch's figures are logged as metrics (step = epoch), the model
//! is stored as the run's `outputs/model.onnx`, and, when asked, registered with the
//! dataset's profile of its feature columns as the drift baseline.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use shoal_train::{DataSpec, Dataset, EpochMetrics, TrainConfig, Trainer};
use tokio_util::sync::CancellationToken;

use super::{Jobs, Outcome};
use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{BuiltinJob, MetricPoint, Run, RunStatus};
use shoal_registry::registry::NewVersion;

/// Checks a built-in job before it is queued: a known trainer and params it accepts.
///
/// # Errors
/// `InvalidArgument` naming the trainer or the param.
pub fn check(job: &BuiltinJob, params: &BTreeMap<String, String>) -> TrackingResult<()> {
    let trainer: Trainer = job
        .trainer
        .parse()
        .map_err(|e| TrackingError::invalid(format!("{e}")))?;
    TrainConfig::from_params(trainer, params).map_err(|e| TrackingError::invalid(e.to_string()))?;
    if job.target.is_empty() {
        return Err(TrackingError::invalid(
            "a built-in run needs --target, the column to predict",
        ));
    }
    Ok(())
}

/// The metric names a built-in run logs: validation figures by their plain names
/// (`accuracy`, `macro_f1`, `rmse`, `mae`), losses and training figures prefixed.
pub fn metric_points(metrics: &EpochMetrics, now_ms: i64) -> Vec<(String, MetricPoint)> {
    metrics
        .named_values()
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                "val_loss" => "val_loss",
                other => other.strip_prefix("val_").unwrap_or(other),
            };
            (
                name.to_string(),
                MetricPoint {
                    value,
                    step: i64::from(metrics.epoch),
                    timestamp_ms: now_ms,
                },
            )
        })
        .collect()
}

/// Why training ended before its last epoch.
enum Interruption {
    Canceled,
    EarlyStop(String),
}

/// What a built-in training reports while it runs.
pub enum Progress {
    /// A line for the run's log.
    Line(String),
    /// An epoch's figures (step = epoch), with the line that summarises them.
    Epoch {
        epoch: i64,
        points: Vec<(String, MetricPoint)>,
        line: String,
    },
}

/// Trains a built-in job on the CSV at `csv`, on the calling (blocking) thread; the hub and
/// remote workers share it. `on_progress` sees every log line and epoch and returns `false`
/// to stop training after that epoch (the model so far is returned).
///
/// # Errors
/// `InvalidArgument` for a trainer, params or dataset the trainer refuses.
pub fn train_blocking(
    csv: &std::path::Path,
    job: &BuiltinJob,
    params: &BTreeMap<String, String>,
    dataset_label: &str,
    mut on_progress: impl FnMut(Progress) -> bool,
) -> TrackingResult<shoal_train::TrainedModel> {
    let trainer: Trainer = job
        .trainer
        .parse()
        .map_err(|e| TrackingError::invalid(format!("{e}")))?;
    let config = TrainConfig::from_params(trainer, params)
        .map_err(|e| TrackingError::invalid(e.to_string()))?;
    let spec = DataSpec {
        target: job.target.clone(),
        features: (!job.features.is_empty()).then(|| job.features.clone()),
    };
    let file = std::fs::File::open(csv).map_err(shoal_store::IoError::with(format!(
        "open dataset {}",
        csv.display()
    )))?;
    let dataset = Dataset::from_csv(std::io::BufReader::new(file), &spec)
        .map_err(|e| TrackingError::invalid(format!("dataset {dataset_label}: {e}")))?;
    on_progress(Progress::Line(format!(
        "[shoal] {} on {}: {} rows ({} skipped for nulls), {} features, target '{}'",
        trainer,
        dataset_label,
        dataset.rows(),
        dataset.rows_skipped(),
        dataset.feature_names().len(),
        dataset.target_name()
    )));
    let epochs = config.epochs;
    shoal_train::train(&dataset, &config, |metrics| {
        let points = metric_points(metrics, shoal_store::now_ms());
        let summary: Vec<String> = points
            .iter()
            .map(|(k, p)| format!("{k} {:.4}", p.value))
            .collect();
        let line = format!("epoch {}/{epochs}: {}", metrics.epoch, summary.join(", "));
        if on_progress(Progress::Epoch {
            epoch: i64::from(metrics.epoch),
            points,
            line,
        }) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .map_err(|e| TrackingError::invalid(format!("training failed: {e}")))
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
    let csv_path = jobs.datasets().path(&dataset_version);
    let (worker_jobs, worker_run, worker_job) = (jobs.clone(), run.clone(), job.clone());
    let trained = tokio::task::spawn_blocking(move || -> TrackingResult<_> {
        let (jobs, run) = (worker_jobs, worker_run);
        let tracking = jobs.tracking();
        let log = |text: String| {
            let _ = tracking.append_log(&run.id, &[(shoal_store::now_ms(), text)]);
        };
        let advisor = jobs.advisor();
        let mut interruption = None;
        let model = train_blocking(
            &csv_path,
            &worker_job,
            &run.params,
            &job_dataset(&run),
            |progress| match progress {
                Progress::Line(line) => {
                    log(line);
                    true
                }
                Progress::Epoch {
                    epoch,
                    points,
                    line,
                } => {
                    log(line);
                    if let Err(error) = tracking.log_metrics(&run.id, &points) {
                        tracing::warn!(run = %run.id, %error, "cannot log epoch metrics");
                    }
                    if cancel.is_cancelled() {
                        interruption = Some(Interruption::Canceled);
                        return false;
                    }
                    let reason = advisor.as_ref().and_then(|advisor| {
                        let current = tracking.run(&run.id).ok()?;
                        advisor.should_stop(&current, epoch)
                    });
                    if let Some(reason) = reason {
                        log(format!("[shoal] early termination: {reason}"));
                        interruption = Some(Interruption::EarlyStop(reason));
                        return false;
                    }
                    true
                }
            },
        )?;
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
        let reference =
            register_model(jobs, run, name, "", &model.feature_names, digest, size).await?;
        tracking.append_log(
            &run.id,
            &[(
                shoal_store::now_ms(),
                format!("[shoal] registered {reference}"),
            )],
        )?;
    }
    jobs.finish(run, Outcome::Exited(0), Vec::new())?;
    Ok(())
}

fn job_dataset(run: &Run) -> String {
    run.inputs.first().cloned().unwrap_or_default()
}

/// Registers a run's ONNX output as a model version and records the lineage on both sides
/// (`shoal.run` and `shoal.dataset` tags on the version, `name@version` in the run's outputs).
/// With `features` (the model's input columns, as a built-in trainer knows them), the run's
/// dataset profile over those columns becomes the version's drift baseline; without (a
/// script's model), the version has none. Returns `name@version`.
///
/// # Errors
/// What the registry refuses (the model, the name, the baseline).
pub async fn register_model(
    jobs: &Jobs,
    run: &Run,
    name: &str,
    description: &str,
    features: &[String],
    digest: String,
    size: u64,
) -> TrackingResult<String> {
    let mut tags = BTreeMap::from([("shoal.run".to_string(), run.id.clone())]);
    if let Some(dataset) = run.inputs.first() {
        tags.insert("shoal.dataset".to_string(), dataset.clone());
    }
    let version = jobs
        .registry()
        .register(
            NewVersion {
                workspace: run.workspace.clone(),
                name: name.to_string(),
                description: if description.is_empty() {
                    format!("from run {}", run.id)
                } else {
                    description.to_string()
                },
                tags,
            },
            digest,
            size,
        )
        .await?;
    if let (Some(dataset), false) = (run.inputs.first(), features.is_empty()) {
        let dataset = jobs.datasets().resolve(&run.workspace, dataset)?;
        jobs.registry()
            .set_baseline(
                &run.workspace,
                name,
                &version.version.to_string(),
                "",
                features.to_vec(),
                jobs.datasets().path(&dataset),
            )
            .await?;
    }
    let reference = format!("{name}@{}", version.version);
    jobs.tracking().update_run(&run.id, |r| {
        if !r.outputs.contains(&reference) {
            r.outputs.push(reference.clone());
        }
        Ok(())
    })?;
    Ok(reference)
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

/// Registers the `outputs/model.onnx` a built-in run stored (on a worker) as `name`, with the
/// dataset's profile over the trained features as its baseline. Returns `name@version`.
///
/// # Errors
/// `NotFound` when the run stored no model; what the registry refuses.
pub async fn register_output(
    jobs: &Jobs,
    run: &Run,
    job: &BuiltinJob,
    name: &str,
) -> TrackingResult<String> {
    let entry = jobs
        .tracking()
        .artifact(&format!("{}/outputs/model.onnx", run.artifact_root()))?;
    let features = job_features(jobs, run, job)?;
    let reference = register_model(
        jobs,
        run,
        name,
        "",
        &features,
        entry.digest,
        entry.size_bytes,
    )
    .await?;
    jobs.tracking().append_log(
        &run.id,
        &[(
            shoal_store::now_ms(),
            format!("[shoal] registered {reference}"),
        )],
    )?;
    Ok(reference)
}
