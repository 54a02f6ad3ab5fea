//! Built-in trainer runs: a [`shoal_train`] trainer on a registered dataset, on a blocking
//! thread of the hub. Every epoch's figures are logged as metrics (step = epoch), the model
//! is stored as the run's `outputs/model.onnx`, and, when asked, registered with the
//! dataset's profile of its feature columns as the drift baseline.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use shoal_train::{DataSpec, Dataset, EpochMetrics, TrainConfig, Trainer};
use tokio_util::sync::CancellationToken;

use super::{Jobs, Outcome};
use crate::error::{HubError, HubResult};
use crate::registry::NewVersion;
use crate::tracking::{BuiltinJob, MetricPoint, Run, RunStatus};

/// Checks a built-in job before it is queued: a known trainer and params it accepts.
///
/// # Errors
/// `InvalidArgument` naming the trainer or the param.
pub fn check(job: &BuiltinJob, params: &BTreeMap<String, String>) -> HubResult<()> {
    let trainer: Trainer = job
        .trainer
        .parse()
        .map_err(|e| HubError::invalid(format!("{e}")))?;
    TrainConfig::from_params(trainer, params).map_err(|e| HubError::invalid(e.to_string()))?;
    if job.target.is_empty() {
        return Err(HubError::invalid(
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
) -> HubResult<()> {
    let dataset_version = jobs.datasets().resolve(&run.workspace, &job.dataset)?;
    let csv_path = jobs.datasets().path(&dataset_version);
    let trainer: Trainer = job
        .trainer
        .parse()
        .map_err(|e| HubError::invalid(format!("{e}")))?;
    let config = TrainConfig::from_params(trainer, &run.params)
        .map_err(|e| HubError::invalid(e.to_string()))?;
    let spec = DataSpec {
        target: job.target.clone(),
        features: (!job.features.is_empty()).then(|| job.features.clone()),
    };
    let (worker_jobs, worker_run) = (jobs.clone(), run.clone());
    let epochs = config.epochs;
    let trained = tokio::task::spawn_blocking(move || -> HubResult<_> {
        let jobs = worker_jobs;
        let run = worker_run;
        let tracking = jobs.tracking();
        let log = |text: String| {
            let _ = tracking.append_log(&run.id, &[(crate::now_ms(), text)]);
        };
        let file = std::fs::File::open(&csv_path)?;
        let dataset = Dataset::from_csv(std::io::BufReader::new(file), &spec)
            .map_err(|e| HubError::invalid(format!("dataset {}: {e}", job_dataset(&run))))?;
        log(format!(
            "[shoal] {} on {}: {} rows ({} skipped for nulls), {} features, target '{}'",
            trainer,
            job_dataset(&run),
            dataset.rows(),
            dataset.rows_skipped(),
            dataset.feature_names().len(),
            dataset.target_name()
        ));
        let advisor = jobs.advisor();
        let mut interruption = None;
        let model = shoal_train::train(&dataset, &config, |metrics| {
            let points = metric_points(metrics, crate::now_ms());
            let summary: Vec<String> = points
                .iter()
                .map(|(k, p)| format!("{k} {:.4}", p.value))
                .collect();
            log(format!(
                "epoch {}/{epochs}: {}",
                metrics.epoch,
                summary.join(", ")
            ));
            if let Err(error) = tracking.log_metrics(&run.id, &points) {
                tracing::warn!(run = %run.id, %error, "cannot log epoch metrics");
            }
            if cancel.is_cancelled() {
                interruption = Some(Interruption::Canceled);
                return ControlFlow::Break(());
            }
            if let Some(advisor) = &advisor {
                if let Ok(current) = tracking.run(&run.id) {
                    if let Some(reason) = advisor.should_stop(&current, i64::from(metrics.epoch)) {
                        log(format!("[shoal] early termination: {reason}"));
                        interruption = Some(Interruption::EarlyStop(reason));
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| HubError::invalid(format!("training failed: {e}")))?;
        Ok((model, interruption))
    })
    .await
    .map_err(|e| HubError::Internal(format!("training task: {e}")))??;
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
        let reference = register_model(jobs, run, name, &model.feature_names, digest, size).await?;
        tracking.append_log(
            &run.id,
            &[(crate::now_ms(), format!("[shoal] registered {reference}"))],
        )?;
    }
    jobs.finish(run, Outcome::Exited(0), Vec::new())?;
    Ok(())
}

fn job_dataset(run: &Run) -> String {
    run.inputs.first().cloned().unwrap_or_default()
}

/// Registers a run's ONNX output as a model version, with the run's dataset profile (over the
/// model's feature columns) as its drift baseline, and records the lineage on both sides.
/// Returns `name@version`.
///
/// # Errors
/// What the registry refuses (the model, the name, the baseline).
pub async fn register_model(
    jobs: &Jobs,
    run: &Run,
    name: &str,
    features: &[String],
    digest: String,
    size: u64,
) -> HubResult<String> {
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
                description: format!("trained by run {}", run.id),
                tags,
            },
            digest,
            size,
        )
        .await?;
    if let Some(dataset) = run.inputs.first() {
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

/// Registers a run's ONNX output without a baseline (a script run's model, whose feature
/// columns the hub does not know), recording the lineage on both sides.
///
/// # Errors
/// What the registry refuses.
pub async fn register_plain(
    jobs: &Jobs,
    run: &Run,
    name: &str,
    description: &str,
    digest: String,
    size: u64,
) -> HubResult<String> {
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
    let reference = format!("{name}@{}", version.version);
    jobs.tracking().update_run(&run.id, |r| {
        if !r.outputs.contains(&reference) {
            r.outputs.push(reference.clone());
        }
        Ok(())
    })?;
    Ok(reference)
}
