//! `shoal-hub worker`: a remote compute target. It leases queued `worker` runs from a hub over
//! gRPC, downloads and unpacks their source snapshot, runs the command in its own process
//! group, streams log lines and `SHOAL_METRICS` points back (every report is also a
//! heartbeat), uploads `outputs/`, and reports how the command ended. A cancel seen in a
//! report's answer stops the process group.

use std::path::PathBuf;
use std::time::Duration;

use shoal_proto::training::{self as pb, worker_service_client::WorkerServiceClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use shoal_client::{describe_status, ClientError, HubClient, TokenInterceptor};
use shoal_compute::{pump_events, EventBatch, GROUP_FILE, METRICS_FILE};
use shoal_train::Progress;

/// How long one lease call may wait on the hub for work.
const LEASE_WAIT_MS: u32 = 10_000;
/// Pause after a failed call before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Largest source snapshot a worker unpacks.
const MAX_SOURCE_BYTES: u64 = 1024 * 1024 * 1024;

type Client = WorkerServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, TokenInterceptor>,
>;

/// Why the worker, or one run on it, stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The hub could not be reached, or refused a call.
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The run could not run here; the hub has been told (the run failed with this message).
    #[error("{0}")]
    RunFailed(String),
    #[error("{0}")]
    Task(String),
}

pub type WorkerResult<T> = Result<T, WorkerError>;

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> WorkerError {
    move |source| WorkerError::Io { what, source }
}

/// What a worker needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub hub_url: String,
    pub token: Option<String>,
    /// The CA (PEM) an `https://` hub's certificate must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Unique per worker; runs record it as their executor.
    pub worker_id: String,
    pub labels: Vec<String>,
    /// Runs get `{work_dir}/{run_id}`.
    pub work_dir: PathBuf,
}

/// The environment of a leased script run: what the hub sent, which carries the run's own
/// token. The job inherits the worker's environment, so the token variables are always set
/// from the lease (empty if the hub sent none) and the worker's own token never reaches a run.
fn run_env(lease_env: std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = lease_env.into_iter().collect();
    for key in ["SHOAL_TOKEN", "MLFLOW_TRACKING_TOKEN"] {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.to_string(), String::new()));
        }
    }
    env
}

/// Serves runs until `shutdown` completes; a run in progress is stopped and reported.
///
/// # Errors
/// When the hub cannot be reached at start.
pub async fn run_worker(
    config: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> WorkerResult<()> {
    let hub = HubClient::connect_with(
        &config.hub_url,
        config.token.as_deref(),
        config.ca.as_deref(),
    )
    .await?;
    let mut client: Client = hub.worker;
    std::fs::create_dir_all(&config.work_dir)
        .map_err(io_error(format!("create {}", config.work_dir.display())))?;
    // A worker killed mid-run leaves its job's process group behind; stop it now. (The hub
    // has failed that run after the heartbeat timeout.)
    let leftovers = shoal_compute::kill_leftovers(&config.work_dir);
    if leftovers > 0 {
        tracing::warn!(leftovers, "killed jobs left running by an earlier worker");
    }
    let stop = CancellationToken::new();
    let serving = async {
        while !stop.is_cancelled() {
            let lease = client
                .lease_run(pb::LeaseRequest {
                    worker_id: config.worker_id.clone(),
                    labels: config.labels.clone(),
                    wait_ms: LEASE_WAIT_MS,
                })
                .await;
            match lease {
                Ok(answer) => {
                    if let Some(lease) = answer.into_inner().lease {
                        let run_id = lease.run_id.clone();
                        tracing::info!(run = %run_id, "run leased");
                        if let Err(error) = execute(&mut client, &config, lease, &stop).await {
                            tracing::warn!(run = %run_id, %error, "run failed on this worker");
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(error = %describe_status(&status), "lease failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    };
    tokio::select! {
        _ = serving => {}
        _ = shutdown => stop.cancel(),
    }
    Ok(())
}

async fn execute(
    client: &mut Client,
    config: &WorkerConfig,
    lease: pb::Lease,
    stop: &CancellationToken,
) -> WorkerResult<()> {
    use futures::StreamExt;
    let run_id = lease.run_id.clone();
    let workdir = config.work_dir.join(&run_id);
    let archive = config.work_dir.join(format!("{run_id}.tar.gz"));
    // Fetch and unpack the source.
    let mut stream = client
        .download_source(pb::DownloadSourceRequest {
            run_id: run_id.clone(),
            worker_id: config.worker_id.clone(),
        })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let mut bytes = Vec::with_capacity(lease.source_bytes as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(ClientError::from)?.data);
    }
    if let Some(job) = lease.builtin.clone() {
        return execute_builtin(client, config, lease, job, bytes, stop).await;
    }
    std::fs::write(&archive, &bytes).map_err(io_error(format!(
        "write the snapshot {}",
        archive.display()
    )))?;
    if let Err(error) =
        shoal_compute::unpack_snapshot_file(&archive, &workdir, MAX_SOURCE_BYTES).await
    {
        let _ = std::fs::remove_file(&archive);
        let message = format!("source snapshot refused: {error}");
        return Err(fail(client, config, &run_id, message).await);
    }
    let _ = std::fs::remove_file(&archive);

    let spec = shoal_compute::JobSpec {
        env: run_env(lease.env),
        inherit_env: shoal_compute::InheritEnv::AllowList,
        sandbox: shoal_compute::Sandbox::for_run(&[], &config.work_dir, &workdir, false),
        metrics_file: Some(workdir.join(METRICS_FILE)),
        group_file: Some(workdir.join(GROUP_FILE)),
        ..shoal_compute::JobSpec::new(lease.command.clone(), &workdir)
    };
    let cancel = stop.child_token();
    let (tx, rx) = mpsc::channel(1024);
    let (batches_tx, batches_rx) = mpsc::channel::<EventBatch>(64);
    let pump = tokio::spawn(pump_events(rx, move |batch| {
        let batches = batches_tx.clone();
        async move {
            let _ = batches.send(batch).await;
        }
    }));
    let job = tokio::spawn(shoal_compute::run_job(spec, tx, cancel.clone()));
    report_until_done(
        client,
        config,
        &run_id,
        batches_rx,
        lease.heartbeat_ms,
        &cancel,
    )
    .await;
    let _ = pump.await;
    let outcome = match job.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => return Err(fail(client, config, &run_id, error.to_string()).await),
        Err(error) => return Err(fail(client, config, &run_id, error.to_string()).await),
    };
    upload_outputs(client, config, &run_id, &workdir).await;
    let (kind, code) = match outcome.status {
        shoal_compute::JobStatus::Exited(code) => ("exited", code),
        shoal_compute::JobStatus::Signaled(signal) => ("signaled", signal),
        shoal_compute::JobStatus::Canceled => ("canceled", 0),
    };
    complete(client, config, &run_id, kind, code, outcome.log_tail).await;
    Ok(())
}

/// Trains a built-in job on the dataset the hub sent, reporting each epoch, and uploads the
/// model as `outputs/model.onnx` (the hub registers it when the run asks).
async fn execute_builtin(
    client: &mut Client,
    config: &WorkerConfig,
    lease: pb::Lease,
    job: pb::BuiltinJob,
    csv: Vec<u8>,
    stop: &CancellationToken,
) -> WorkerResult<()> {
    let run_id = lease.run_id.clone();
    let workdir = config.work_dir.join(&run_id);
    let csv_path = workdir.join("dataset.csv");
    std::fs::create_dir_all(workdir.join("outputs"))
        .and_then(|()| std::fs::write(&csv_path, &csv))
        .map_err(io_error(format!(
            "write the dataset {}",
            csv_path.display()
        )))?;
    let label = job.dataset.clone();
    let job = shoal_train::JobSpec {
        trainer: job.trainer,
        target: job.target,
        features: job.features,
    };
    let params: std::collections::BTreeMap<String, String> = lease.params.into_iter().collect();
    let cancel = stop.child_token();
    let (batches_tx, batches_rx) = mpsc::channel::<EventBatch>(64);
    let training = {
        let (cancel, csv_path) = (cancel.clone(), csv_path.clone());
        tokio::task::spawn_blocking(move || {
            let stopped = std::cell::Cell::new(false);
            let trained = job.train_csv(&csv_path, &params, &label, |progress| {
                let now = shoal_compute::now_ms();
                let mut batch = EventBatch::default();
                match progress {
                    Progress::Line(line) => batch.lines.push((now, line)),
                    Progress::Epoch {
                        epoch,
                        metrics,
                        line,
                    } => {
                        batch.lines.push((now, line));
                        batch.metrics = metrics
                            .into_iter()
                            .map(|(key, value)| shoal_compute::MetricPoint {
                                key,
                                value,
                                step: i64::from(epoch),
                                timestamp_ms: now,
                            })
                            .collect();
                    }
                }
                let _ = batches_tx.blocking_send(batch);
                if cancel.is_cancelled() {
                    stopped.set(true);
                    return false;
                }
                true
            });
            (trained, stopped.get())
        })
    };
    report_until_done(
        client,
        config,
        &run_id,
        batches_rx,
        lease.heartbeat_ms,
        &cancel,
    )
    .await;
    let (trained, stopped) = training
        .await
        .map_err(|e| WorkerError::Task(format!("training task: {e}")))?;
    let model = match trained {
        Ok(model) => model,
        Err(error) => return Err(fail(client, config, &run_id, error.to_string()).await),
    };
    std::fs::write(workdir.join("outputs/model.onnx"), model.to_onnx()).map_err(io_error(
        format!("write the model into {}", workdir.display()),
    ))?;
    upload_outputs(client, config, &run_id, &workdir).await;
    let kind = if stopped { "canceled" } else { "exited" };
    complete(client, config, &run_id, kind, 0, Vec::new()).await;
    Ok(())
}

/// Reports every batch as it comes, and an empty one (a heartbeat) at least every
/// `heartbeat_ms`, until the sender side closes; a report answered with "cancel" cancels.
async fn report_until_done(
    client: &mut Client,
    config: &WorkerConfig,
    run_id: &str,
    mut batches: mpsc::Receiver<EventBatch>,
    heartbeat_ms: u32,
    cancel: &CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(u64::from(heartbeat_ms.max(100))));
    loop {
        let batch = tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
            _ = ticker.tick() => EventBatch::default(),
        };
        if report(client, config, run_id, batch).await {
            cancel.cancel();
        }
    }
}

/// Sends one report; returns whether the hub asked to stop the run.
async fn report(
    client: &mut Client,
    config: &WorkerConfig,
    run_id: &str,
    batch: EventBatch,
) -> bool {
    let request = pb::ReportRequest {
        run_id: run_id.into(),
        worker_id: config.worker_id.clone(),
        lines: batch
            .lines
            .into_iter()
            .map(|(timestamp_ms, text)| pb::LogLine {
                number: 0,
                timestamp_ms,
                text,
            })
            .collect(),
        metrics: batch
            .metrics
            .into_iter()
            .map(|p| pb::WorkerMetric {
                key: p.key,
                value: p.value,
                step: p.step,
                timestamp_ms: p.timestamp_ms,
            })
            .collect(),
    };
    match client.report(request).await {
        Ok(answer) => answer.into_inner().cancel,
        Err(status) => {
            tracing::warn!(run = %run_id, error = %describe_status(&status), "report failed");
            false
        }
    }
}

async fn upload_outputs(
    client: &mut Client,
    config: &WorkerConfig,
    run_id: &str,
    workdir: &std::path::Path,
) {
    let outputs = workdir.join("outputs");
    let files =
        match tokio::task::spawn_blocking(move || shoal_compute::collect_outputs(&outputs)).await {
            Ok(Ok(files)) => files,
            Ok(Err(error)) => {
                tracing::warn!(run = %run_id, %error, "cannot list outputs");
                return;
            }
            Err(error) => {
                tracing::warn!(run = %run_id, %error, "outputs task failed");
                return;
            }
        };
    for file in files {
        let bytes = match tokio::fs::read(&file.abs_path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(path = %file.abs_path.display(), %error, "cannot read an output");
                continue;
            }
        };
        let mut messages = vec![pb::UploadOutputRequest {
            part: Some(pb::upload_output_request::Part::Header(
                pb::UploadOutputHeader {
                    run_id: run_id.into(),
                    worker_id: config.worker_id.clone(),
                    path: format!("outputs/{}", file.rel_path),
                    size_bytes: file.size,
                },
            )),
        }];
        messages.extend(bytes.chunks(256 * 1024).map(|c| pb::UploadOutputRequest {
            part: Some(pb::upload_output_request::Part::Chunk(c.to_vec())),
        }));
        if let Err(status) = client.upload_output(futures::stream::iter(messages)).await {
            tracing::warn!(path = %file.rel_path, error = %describe_status(&status), "output upload failed");
        }
    }
}

/// Reports a run that could not run here as failed; returns the error saying why.
async fn fail(
    client: &mut Client,
    config: &WorkerConfig,
    run_id: &str,
    message: String,
) -> WorkerError {
    complete(client, config, run_id, "exited", -1, vec![message.clone()]).await;
    WorkerError::RunFailed(message)
}

async fn complete(
    client: &mut Client,
    config: &WorkerConfig,
    run_id: &str,
    outcome: &str,
    code: i32,
    log_tail: Vec<String>,
) {
    let request = pb::CompleteRequest {
        run_id: run_id.into(),
        worker_id: config.worker_id.clone(),
        outcome: outcome.into(),
        code,
        log_tail,
    };
    if let Err(status) = client.complete(request).await {
        tracing::warn!(run = %run_id, error = %describe_status(&status), "cannot report the run's end");
    }
}
