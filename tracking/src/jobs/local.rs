//! Script runs on the hub's own host: the snapshot is unpacked into `{runs_dir}/{run_id}`, the
//! command runs there in its own process group with the run's environment, its output and
//! `SHOAL_METRICS` lines are recorded as they come, and `outputs/` becomes the run's
//! artifacts when it ends. Remote workers use [`run_environment`] and `shoal-compute`'s runner pieces too.

use std::collections::BTreeMap;
use std::path::Path;

use shoal_compute::{
    pump_events, InheritEnv, JobSpec, JobStatus, Sandbox, GROUP_FILE, METRICS_FILE,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Jobs, Outcome, LOG_TAIL_LINES};
use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{MetricPoint, Run, ScriptJob};
use shoal_store::IoError;

/// The environment a script run gets: who it is and how to reach the hub, for Shoal's and
/// MLflow's clients alike (`token` is the run's own, which reaches only this run and its
/// inputs), and its params as a JSON object in `SHOAL_PARAMS`.
pub fn run_environment(
    run: &Run,
    grpc_url: &str,
    http_url: &str,
    token: &str,
    extra: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let tracking_uri = if run.workspace == shoal_store::workspace::DEFAULT_WORKSPACE {
        http_url.to_string()
    } else {
        format!("{http_url}/workspaces/{}", run.workspace)
    };
    let mut env: Vec<(String, String)> =
        extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.extend([
        ("SHOAL_RUN_ID".to_string(), run.id.clone()),
        ("SHOAL_HUB".to_string(), grpc_url.to_string()),
        ("SHOAL_TOKEN".to_string(), token.to_string()),
        ("SHOAL_WORKSPACE".to_string(), run.workspace.clone()),
        ("MLFLOW_TRACKING_URI".to_string(), tracking_uri),
        ("MLFLOW_TRACKING_TOKEN".to_string(), token.to_string()),
        ("MLFLOW_RUN_ID".to_string(), run.id.clone()),
        (
            "MLFLOW_EXPERIMENT_ID".to_string(),
            run.experiment_id.clone(),
        ),
        (
            "SHOAL_PARAMS".to_string(),
            serde_json::to_string(&run.params).unwrap_or_default(),
        ),
    ]);
    env
}

/// Metric points as a job reported them, keyed by name.
pub fn metric_points(points: Vec<shoal_compute::MetricPoint>) -> Vec<(String, MetricPoint)> {
    points
        .into_iter()
        .map(|p| {
            let point = MetricPoint {
                value: p.value,
                step: p.step,
                timestamp_ms: p.timestamp_ms,
            };
            (p.key, point)
        })
        .collect()
}

/// Maps the runner's outcome to the hub's.
pub fn outcome_of(status: JobStatus) -> Outcome {
    match status {
        JobStatus::Exited(code) => Outcome::Exited(code),
        JobStatus::Signaled(signal) => Outcome::Signaled(signal),
        JobStatus::Canceled => Outcome::Canceled,
    }
}

/// Unpacks a snapshot file into the run folder `dest`.
///
/// # Errors
/// `InvalidArgument` for an unsafe or corrupt archive.
pub async fn unpack_snapshot(archive: &Path, dest: &Path, limit: u64) -> TrackingResult<()> {
    shoal_compute::unpack_snapshot_file(archive, dest, limit)
        .await
        .map(drop)
        .map_err(|e| TrackingError::invalid(format!("source snapshot refused: {e}")))
}

/// Executes a script run on this host.
///
/// # Errors
/// When the folder cannot be prepared or the command cannot start (the caller fails the run
/// with the message).
pub async fn execute(
    jobs: &Jobs,
    run: &Run,
    job: &ScriptJob,
    cancel: CancellationToken,
) -> TrackingResult<()> {
    let workdir = jobs.inner.runs_dir.join(&run.id);
    let snapshot = jobs.artifacts().local_path(&job.source_digest).await?;
    unpack_snapshot(&snapshot, &workdir, jobs.max_upload_bytes()).await?;
    let endpoints = jobs.endpoints();
    let own = jobs.script_env(run, job)?;
    // The run acts with a token of its own, revoked when it ends (`Jobs::finish`).
    let token = jobs.issue_run_token(run)?;
    let spec = JobSpec {
        env: run_environment(run, &endpoints.grpc_url, &endpoints.http_url, &token, &own),
        inherit_env: InheritEnv::AllowList,
        sandbox: Sandbox::for_run(
            &jobs.inner.hidden,
            &jobs.inner.runs_dir,
            &workdir,
            jobs.inner.sandbox_required,
        ),
        metrics_file: Some(workdir.join(METRICS_FILE)),
        group_file: Some(workdir.join(GROUP_FILE)),
        ..JobSpec::new(job.command.clone(), &workdir)
    };
    let (tx, rx) = mpsc::channel(1024);
    let recorder = {
        let (jobs, run_id) = (jobs.clone(), run.id.clone());
        tokio::spawn(pump_events(rx, move |batch| {
            let (jobs, run_id) = (jobs.clone(), run_id.clone());
            async move {
                let recorded = tokio::task::spawn_blocking(move || {
                    jobs.record_progress(&run_id, &batch.lines, &metric_points(batch.metrics))
                })
                .await;
                if let Ok(Err(error)) = recorded {
                    tracing::warn!(%error, "cannot record run progress");
                }
            }
        }))
    };
    tracing::info!(run = %run.id, command = ?job.command, dir = %workdir.display(), "script run starting");
    let outcome = shoal_compute::run_job(spec, tx, cancel).await;
    // The sender is gone once run_job returns; wait until everything is recorded.
    let _ = recorder.await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let message = error.to_string();
            jobs.tracking().append_log(
                &run.id,
                &[(shoal_store::now_ms(), format!("[shoal] {message}"))],
            )?;
            return Err(TrackingError::invalid(message));
        }
    };
    store_outputs(jobs, run, &workdir.join("outputs")).await?;
    let mut tail = outcome.log_tail;
    if tail.len() > LOG_TAIL_LINES {
        tail.drain(..tail.len() - LOG_TAIL_LINES);
    }
    jobs.finish(run, outcome_of(outcome.status), tail)?;
    Ok(())
}

/// Copies every file under `outputs` into the artifact store as `outputs/…` of the run.
///
/// # Errors
/// Storage errors.
pub async fn store_outputs(jobs: &Jobs, run: &Run, outputs: &Path) -> TrackingResult<()> {
    let dir = outputs.to_path_buf();
    let files = tokio::task::spawn_blocking(move || shoal_compute::collect_outputs(&dir))
        .await
        .map_err(|e| TrackingError::Internal(format!("outputs task: {e}")))?
        .map_err(|e| TrackingError::Internal(format!("listing outputs: {e}")))?;
    for file in files {
        let (digest, size) = store_file(jobs.artifacts(), &file.abs_path).await?;
        jobs.record_output(run, &format!("outputs/{}", file.rel_path), digest, size)?;
    }
    Ok(())
}

/// Streams a file into the artifact store.
///
/// # Errors
/// I/O errors.
pub async fn store_file(
    artifacts: &shoal_store::artifacts::ArtifactStore,
    path: &Path,
) -> TrackingResult<(String, u64)> {
    use tokio::io::AsyncReadExt;
    let reading = || IoError::with(format!("read run output {}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(reading())?;
    let mut writer = artifacts.writer().await?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).await.map_err(reading())?;
        if n == 0 {
            break;
        }
        writer.write(&buffer[..n]).await?;
    }
    Ok(writer.finish().await?)
}
