use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use shoal_access::Target;
use shoal_proto::training::{self as pb, training_service_server::TrainingService};
use tonic::{Request, Response, Status, Streaming};

use super::{
    authorize, authorize_in, caller, receive_chunks, receive_header, status, workspace_or_default,
};
use crate::error::HubError;
use shoal_tracking::dataset::DatasetVersion;
use shoal_tracking::jobs::{Jobs, Submission};
use shoal_tracking::sweep::{SweepSpec, Sweeps};
use shoal_tracking::tracking::{BuiltinJob, Compute, Experiment, Job, Run, RunQuery, ScriptJob};

/// Log lines per message of a log stream.
const LOG_PAGE_LINES: usize = 500;
/// Bytes per message when streaming a run's artifacts or a snapshot.
pub(super) const SOURCE_CHUNK_BYTES: usize = 256 * 1024;

pub struct TrainingApi {
    pub jobs: Jobs,
    pub sweeps: Sweeps,
}

pub fn dataset_to_wire(v: DatasetVersion) -> pb::DatasetVersion {
    use shoal_drift::FeatureKind;
    let columns = v
        .profile
        .columns
        .iter()
        .map(|c| {
            let mut column = pb::ColumnProfile {
                name: c.name.clone(),
                count: c.count,
                nulls: c.nulls,
                distinct: c.distinct,
                min: c.min,
                max: c.max,
                mean: c.mean,
                std: c.std,
                ..Default::default()
            };
            match &c.kind {
                FeatureKind::Numeric(n) => {
                    column.kind = "numeric".into();
                    column.edges = n.edges.clone();
                    column.bin_counts = n.counts.clone();
                }
                FeatureKind::Categorical(k) => {
                    column.kind = "categorical".into();
                    column.top_values = k.vocabulary.clone();
                    column.top_counts = k.counts.iter().take(k.vocabulary.len()).copied().collect();
                }
            }
            column
        })
        .collect();
    pb::DatasetVersion {
        workspace: v.workspace,
        name: v.name,
        version: v.version,
        digest: v.digest,
        size_bytes: v.size_bytes,
        rows: v.profile.rows,
        columns,
        description: v.description,
        created_at_ms: v.created_ms,
        source_run: v.source_run.unwrap_or_default(),
    }
}

fn experiment_to_wire(e: Experiment, runs: u64) -> pb::Experiment {
    pb::Experiment {
        artifact_location: e.artifact_location(),
        workspace: e.workspace,
        id: e.id,
        name: e.name,
        created_at_ms: e.created_ms,
        tags: e.tags.into_iter().collect(),
        runs,
    }
}

pub fn run_to_wire(run: Run, experiment: &str) -> pb::Run {
    let command = match &run.job {
        Some(Job::Script(job)) => job.command.clone(),
        Some(Job::Builtin(job)) => vec![format!("builtin:{}", job.trainer)],
        None => Vec::new(),
    };
    let source_digest = match &run.job {
        Some(Job::Script(job)) => job.source_digest.clone(),
        _ => String::new(),
    };
    pb::Run {
        artifact_uri: run.artifact_uri(),
        id: run.id,
        workspace: run.workspace,
        experiment_id: run.experiment_id,
        experiment: experiment.to_string(),
        name: run.name,
        status: run.status.as_str().into(),
        created_at_ms: run.created_ms,
        started_at_ms: run.started_ms.unwrap_or(0),
        ended_at_ms: run.ended_ms.unwrap_or(0),
        params: run.params.into_iter().collect(),
        tags: run.tags.into_iter().collect(),
        metrics: run
            .metrics
            .into_iter()
            .map(|(k, m)| {
                (
                    k,
                    pb::MetricValue {
                        value: m.value,
                        step: m.step,
                        timestamp_ms: m.timestamp_ms,
                    },
                )
            })
            .collect(),
        compute: run.compute.as_str().into(),
        executor: run.executor.unwrap_or_default(),
        parent_run_id: run.parent_run_id.unwrap_or_default(),
        sweep_id: run.sweep_id.unwrap_or_default(),
        source_digest,
        command,
        inputs: run.inputs,
        outputs: run.outputs,
        exit_code: run.exit_code,
        error: run.error.unwrap_or_default(),
        log_tail: run.log_tail,
        labels: run.labels,
    }
}

fn builtin_from_wire(b: pb::BuiltinJob) -> BuiltinJob {
    BuiltinJob {
        trainer: b.trainer,
        dataset: b.dataset,
        target: b.target,
        features: b.features,
        register_as: (!b.register_as.is_empty()).then_some(b.register_as),
    }
}

/// What a call on `run` acts on, for [`authorize`].
fn run_target(run: &Run) -> Target<'_> {
    Target::Run {
        workspace: &run.workspace,
        run_id: &run.id,
    }
}

/// The experiment a request names; empty means the workspace's `Default`.
fn experiment_or_default(name: String) -> String {
    if name.is_empty() {
        shoal_tracking::tracking::DEFAULT_EXPERIMENT.to_string()
    } else {
        name
    }
}

impl TrainingApi {
    fn wire_run(&self, run: Run) -> pb::Run {
        let experiment = self
            .jobs
            .tracking()
            .experiment(&run.experiment_id)
            .map(|e| e.name)
            .unwrap_or_default();
        run_to_wire(run, &experiment)
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<pb::RunLogsResponse, Status>> + Send>>;
type ArtifactStream = Pin<Box<dyn Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>>;

#[tonic::async_trait]
impl TrainingService for TrainingApi {
    async fn upload_dataset(
        &self,
        request: Request<Streaming<pb::UploadDatasetRequest>>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let (_, extensions, mut stream) = request.into_parts();
        let header = receive_header(
            &mut stream,
            "an upload starts with a header naming the dataset",
            |m| match m.part {
                Some(pb::upload_dataset_request::Part::Header(h)) => Some(h),
                _ => None,
            },
        )
        .await?;
        authorize_in(&extensions, &header.workspace)?;
        let workspace = workspace_or_default(&header.workspace).to_string();
        let datasets = self.jobs.datasets();
        datasets
            .check_new(&workspace, &header.name)
            .map_err(status)?;
        let limit = self.jobs.max_upload_bytes();
        let (digest, size) = receive_chunks(
            &mut stream,
            datasets.artifacts(),
            limit,
            "dataset",
            "--max-upload-bytes",
            |m| match m.part {
                Some(pb::upload_dataset_request::Part::Chunk(c)) => Some(c),
                _ => None,
            },
        )
        .await?;
        let version = datasets
            .register(
                &workspace,
                &header.name,
                &header.description,
                digest,
                size,
                None,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(dataset_to_wire(version)))
    }

    async fn list_datasets(
        &self,
        request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let versions = self
            .jobs
            .datasets()
            .list(workspace_or_default(&r.workspace))
            .map_err(status)?;
        Ok(Response::new(pb::ListDatasetsResponse {
            versions: versions.into_iter().map(dataset_to_wire).collect(),
        }))
    }

    async fn get_dataset(
        &self,
        request: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let (_, extensions, r) = request.into_parts();
        let version = self
            .jobs
            .datasets()
            .resolve(workspace_or_default(&r.workspace), &r.reference)
            .map_err(status)?;
        authorize(
            &extensions,
            Target::Dataset {
                workspace: &version.workspace,
                reference: &version.reference(),
            },
        )?;
        Ok(Response::new(dataset_to_wire(version)))
    }

    async fn register_dataset_from_run(
        &self,
        request: Request<pb::RegisterDatasetFromRunRequest>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let (_, extensions, r) = request.into_parts();
        let tracking = self.jobs.tracking();
        let run = tracking.run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let path = r.path.trim_start_matches("./");
        let entry = tracking
            .artifact(&format!("{}/{path}", run.artifact_root()))
            .map_err(status)?;
        let version = self
            .jobs
            .datasets()
            .register(
                &run.workspace,
                &r.name,
                &r.description,
                entry.digest,
                entry.size_bytes,
                Some(run.id.clone()),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(dataset_to_wire(version)))
    }

    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Result<Response<pb::Experiment>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let experiment = self
            .jobs
            .tracking()
            .create_experiment(workspace_or_default(&r.workspace), &r.name, BTreeMap::new())
            .map_err(status)?;
        Ok(Response::new(experiment_to_wire(experiment, 0)))
    }

    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Result<Response<pb::ListExperimentsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let tracking = self.jobs.tracking();
        let experiments = tracking
            .experiments(workspace_or_default(&r.workspace), false)
            .map_err(status)?;
        let mut wire = Vec::new();
        for e in experiments {
            let runs = tracking.experiment_run_ids(&e.id).map_err(status)?.len() as u64;
            wire.push(experiment_to_wire(e, runs));
        }
        Ok(Response::new(pb::ListExperimentsResponse {
            experiments: wire,
        }))
    }

    async fn submit_run(
        &self,
        request: Request<Streaming<pb::SubmitRunRequest>>,
    ) -> Result<Response<pb::Run>, Status> {
        let (_, extensions, mut stream) = request.into_parts();
        let header = receive_header(
            &mut stream,
            "a submission starts with a header describing the run",
            |m| match m.part {
                Some(pb::submit_run_request::Part::Header(h)) => Some(h),
                _ => None,
            },
        )
        .await?;
        authorize_in(&extensions, &header.workspace)?;
        let compute = Compute::parse(&header.compute).map_err(status)?;
        let job = match header.job {
            Some(pb::submit_run_header::Job::Builtin(b)) => Job::Builtin(builtin_from_wire(b)),
            Some(pb::submit_run_header::Job::Script(s)) => {
                let limit = self.jobs.max_upload_bytes();
                let (digest, size) = receive_chunks(
                    &mut stream,
                    self.jobs.artifacts(),
                    limit,
                    "source snapshot",
                    "--max-upload-bytes",
                    |m| match m.part {
                        Some(pb::submit_run_request::Part::Chunk(c)) => Some(c),
                        _ => None,
                    },
                )
                .await?;
                if size == 0 {
                    return Err(Status::invalid_argument(
                        "a script run needs its source snapshot (--dir)",
                    ));
                }
                Job::Script(ScriptJob {
                    command: s.command,
                    env: s.env.into_iter().collect(),
                    secrets: s.secrets.into_iter().collect(),
                    source_digest: digest,
                    source_bytes: size,
                })
            }
            None => {
                return Err(Status::invalid_argument(
                    "a run needs a job: a built-in trainer or a script",
                ))
            }
        };
        let submission = Submission {
            workspace: workspace_or_default(&header.workspace).to_string(),
            experiment: experiment_or_default(header.experiment),
            name: (!header.name.is_empty()).then_some(header.name),
            params: header.params.into_iter().collect(),
            tags: header.tags.into_iter().collect(),
            compute,
            labels: header.labels,
            job,
            parent_run_id: None,
            sweep_id: None,
        };
        let jobs = self.jobs.clone();
        let run = tokio::task::spawn_blocking(move || jobs.submit(submission))
            .await
            .map_err(|e| status(HubError::Internal(format!("submit task: {e}"))))?
            .map_err(status)?;
        Ok(Response::new(self.wire_run(run)))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let run = self
            .jobs
            .tracking()
            .run(&request.get_ref().run_id)
            .map_err(status)?;
        authorize(request.extensions(), run_target(&run))?;
        Ok(Response::new(self.wire_run(run)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        let tracking = self.jobs.tracking();
        let mut experiment_ids = Vec::new();
        for name in &r.experiments {
            experiment_ids.push(
                tracking
                    .experiment_by_name(workspace, name)
                    .map_err(status)?
                    .id,
            );
        }
        let filter = shoal_tracking::search::run_filter(&r.filter).map_err(status)?;
        let order = shoal_tracking::search::run_order(&r.order_by).map_err(status)?;
        let runs = tracking
            .search_runs(&RunQuery {
                workspace,
                experiment_ids,
                filter: filter.as_deref(),
                order_by: order.as_deref(),
                include_deleted: false,
                limit: r.limit as usize,
            })
            .map_err(status)?;
        // One lookup per experiment, not one per run.
        let names: std::collections::HashMap<String, String> = tracking
            .experiments(workspace, true)
            .map_err(status)?
            .into_iter()
            .map(|e| (e.id, e.name))
            .collect();
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs
                .into_iter()
                .map(|run| {
                    let experiment = names.get(&run.experiment_id).cloned().unwrap_or_default();
                    run_to_wire(run, &experiment)
                })
                .collect(),
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let run = self
            .jobs
            .tracking()
            .run(&request.get_ref().run_id)
            .map_err(status)?;
        authorize(request.extensions(), run_target(&run))?;
        let run = self
            .jobs
            .cancel(&run.id, "canceled by a user")
            .map_err(status)?;
        Ok(Response::new(self.wire_run(run)))
    }

    async fn get_metric_history(
        &self,
        request: Request<pb::MetricHistoryRequest>,
    ) -> Result<Response<pb::MetricHistoryResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let run = self.jobs.tracking().run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let points = self
            .jobs
            .tracking()
            .metric_history(&r.run_id, &r.key)
            .map_err(status)?;
        Ok(Response::new(pb::MetricHistoryResponse {
            points: points
                .into_iter()
                .map(|p| pb::MetricValue {
                    value: p.value,
                    step: p.step,
                    timestamp_ms: p.timestamp_ms,
                })
                .collect(),
        }))
    }

    type StreamRunLogsStream = LogStream;

    async fn stream_run_logs(
        &self,
        request: Request<pb::RunLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let (_, extensions, r) = request.into_parts();
        let tracking = self.jobs.tracking().clone();
        let run = tracking.run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut changes = tracking.subscribe();
            let mut after = r.from_line;
            loop {
                // Read the status before the lines, so lines written just before the end are
                // never missed.
                let finished = match tracking.run(&r.run_id) {
                    Ok(run) => run.status.is_terminal(),
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                loop {
                    let lines = match tracking.log_lines(&r.run_id, after, LOG_PAGE_LINES) {
                        Ok(lines) => lines,
                        Err(e) => {
                            let _ = tx.send(Err(status(e))).await;
                            return;
                        }
                    };
                    if lines.is_empty() {
                        break;
                    }
                    after = lines.last().map_or(after, |l| l.number);
                    let message = pb::RunLogsResponse {
                        lines: lines
                            .into_iter()
                            .map(|l| pb::LogLine {
                                number: l.number,
                                timestamp_ms: l.timestamp_ms,
                                text: l.text,
                            })
                            .collect(),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                if !r.follow || finished {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_run_artifacts(
        &self,
        request: Request<pb::ListRunArtifactsRequest>,
    ) -> Result<Response<pb::ListRunArtifactsResponse>, Status> {
        let tracking = self.jobs.tracking();
        let run = tracking.run(&request.get_ref().run_id).map_err(status)?;
        authorize(request.extensions(), run_target(&run))?;
        let artifacts = tracking
            .artifacts_under(&run.artifact_root())
            .map_err(status)?;
        Ok(Response::new(pb::ListRunArtifactsResponse {
            artifacts: artifacts
                .into_iter()
                .map(|(path, entry)| pb::RunArtifact {
                    path,
                    size_bytes: entry.size_bytes,
                    digest: entry.digest,
                })
                .collect(),
        }))
    }

    type DownloadRunArtifactStream = ArtifactStream;

    async fn download_run_artifact(
        &self,
        request: Request<pb::DownloadRunArtifactRequest>,
    ) -> Result<Response<ArtifactStream>, Status> {
        let (_, extensions, r) = request.into_parts();
        let tracking = self.jobs.tracking();
        let run = tracking.run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let path = r.path.trim_start_matches("./");
        let entry = tracking
            .artifact(&format!("{}/{path}", run.artifact_root()))
            .map_err(status)?;
        let artifacts = self.jobs.artifacts().clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut offset = 0u64;
            loop {
                let (data, total) = match artifacts
                    .read_range(&entry.digest, offset, SOURCE_CHUNK_BYTES as u64)
                    .await
                {
                    Ok(read) => read,
                    Err(error) => {
                        let _ = tx.send(Err(status(error))).await;
                        return;
                    }
                };
                let first = offset == 0;
                offset += data.len() as u64;
                let done = data.is_empty() || offset >= total;
                let chunk = pb::ArtifactChunk {
                    data,
                    size_bytes: if first { total } else { 0 },
                    digest: if first {
                        entry.digest.clone()
                    } else {
                        String::new()
                    },
                };
                if tx.send(Ok(chunk)).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn register_from_run(
        &self,
        request: Request<pb::RegisterFromRunRequest>,
    ) -> Result<Response<pb::RegisterFromRunResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let run = self.jobs.tracking().run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let version = self
            .jobs
            .register_run_output(&run, &r.path, &r.model, &r.description)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RegisterFromRunResponse {
            model: version.model,
            version: version.version,
        }))
    }

    async fn upload_source(
        &self,
        request: Request<Streaming<pb::UploadSourceRequest>>,
    ) -> Result<Response<pb::UploadSourceResponse>, Status> {
        // A snapshot is content-addressed and belongs to no workspace until a submission
        // names it: the access layer's check (contributor somewhere) is the whole check.
        caller(request.extensions())?;
        let mut stream = request.into_inner();
        let (digest, size_bytes) = receive_chunks(
            &mut stream,
            self.jobs.artifacts(),
            self.jobs.max_upload_bytes(),
            "source snapshot",
            "--max-upload-bytes",
            |m| Some(m.chunk),
        )
        .await?;
        Ok(Response::new(pb::UploadSourceResponse {
            digest,
            size_bytes,
        }))
    }

    async fn submit_sweep(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let mut register_best = (!r.register_best.is_empty()).then_some(r.register_best);
        let job = match (r.builtin, r.script) {
            (Some(builtin), None) => {
                let job = builtin_from_wire(builtin);
                register_best = register_best.or(job.register_as.clone());
                Job::Builtin(job)
            }
            (None, Some(script)) => {
                let size_bytes =
                    self.jobs
                        .artifacts()
                        .size(&r.source_digest)
                        .await
                        .map_err(|_| {
                            Status::not_found(format!(
                                "source snapshot '{}' not found; upload it with UploadSource first",
                                r.source_digest
                            ))
                        })?;
                Job::Script(ScriptJob {
                    command: script.command,
                    env: script.env.into_iter().collect(),
                    secrets: script.secrets.into_iter().collect(),
                    source_digest: r.source_digest,
                    source_bytes: size_bytes,
                })
            }
            _ => {
                return Err(Status::invalid_argument(
                    "a sweep needs one job: a built-in trainer or a script",
                ))
            }
        };
        let spec = SweepSpec {
            workspace: workspace_or_default(&r.workspace).to_string(),
            experiment: experiment_or_default(r.experiment),
            name: r.name,
            job,
            compute: Compute::parse(&r.compute).map_err(status)?,
            labels: r.labels,
            register_best,
            space: r.space.into_iter().collect(),
            sampling: r.sampling,
            seed: r.seed,
            max_runs: r.max_runs,
            concurrency: r.concurrency,
            metric: r.metric,
            goal: r.goal,
            early_stop: r.early_stop,
        };
        let sweeps = self.sweeps.clone();
        let sweep = tokio::task::spawn_blocking(move || sweeps.submit(spec))
            .await
            .map_err(|e| status(HubError::Internal(format!("sweep task: {e}"))))?
            .map_err(status)?;
        Ok(Response::new(shoal_tracking::sweep::sweep_to_wire(sweep)))
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let sweep = self
            .sweeps
            .get(&request.get_ref().sweep_id)
            .map_err(status)?;
        authorize_in(request.extensions(), &sweep.workspace)?;
        Ok(Response::new(shoal_tracking::sweep::sweep_to_wire(sweep)))
    }

    async fn list_sweeps(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let sweeps = self
            .sweeps
            .list(workspace_or_default(&r.workspace))
            .map_err(status)?;
        Ok(Response::new(pb::ListSweepsResponse {
            sweeps: sweeps
                .into_iter()
                .map(shoal_tracking::sweep::sweep_to_wire)
                .collect(),
        }))
    }
}
