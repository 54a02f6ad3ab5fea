//! The worker service: remote workers lease runs, fetch their source or dataset, report
//! progress (which doubles as a heartbeat), upload outputs and complete. Decisions (which
//! run, what a failed lease does, registration on completion) are the jobs layer's.

use std::pin::Pin;

use futures::Stream;
use shoal_proto::training::{self as pb, worker_service_server::WorkerService};
use tonic::{Request, Response, Status, Streaming};

use super::training::SOURCE_CHUNK_BYTES;
use super::{authorize, receive_chunks, receive_header, status};
use crate::error::HubError;
use shoal_access::Target;
use shoal_tracking::jobs::lease::LeasedWork;
use shoal_tracking::jobs::{Jobs, Outcome};
use shoal_tracking::tracking::MetricPoint;

pub struct WorkerApi {
    pub jobs: Jobs,
}

fn lines_from_wire(lines: Vec<pb::LogLine>) -> Vec<(i64, String)> {
    lines
        .into_iter()
        .map(|l| (l.timestamp_ms, l.text))
        .collect()
}

fn metrics_from_wire(metrics: Vec<pb::WorkerMetric>) -> Vec<(String, MetricPoint)> {
    metrics
        .into_iter()
        .map(|m| {
            (
                m.key,
                MetricPoint {
                    value: m.value,
                    step: m.step,
                    timestamp_ms: m.timestamp_ms,
                },
            )
        })
        .collect()
}

type SourceStream = Pin<Box<dyn Stream<Item = Result<pb::SourceChunk, Status>> + Send>>;

/// Longest a lease call waits for work.
const MAX_LEASE_WAIT_MS: u32 = 30_000;

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn lease_run(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        authorize(request.extensions(), Target::Hub)?;
        let r = request.into_inner();
        if r.worker_id.is_empty() || r.worker_id == "local" {
            return Err(Status::invalid_argument(
                "a worker needs an id other than 'local'",
            ));
        }
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(u64::from(r.wait_ms.min(MAX_LEASE_WAIT_MS)));
        let mut changes = self.jobs.tracking().subscribe();
        let shutting_down = self.jobs.shutting_down();
        loop {
            let (jobs, worker, labels) = (self.jobs.clone(), r.worker_id.clone(), r.labels.clone());
            let leased = tokio::task::spawn_blocking(move || jobs.lease_work(&worker, &labels))
                .await
                .map_err(|e| status(HubError::Internal(format!("lease task: {e}"))))?
                .map_err(status)?;
            if let Some(work) = leased {
                let heartbeat_ms = (self.jobs.heartbeat_timeout().as_millis() / 3).max(100) as u32;
                let lease = lease_to_wire(work, heartbeat_ms);
                return Ok(Response::new(pb::LeaseResponse { lease: Some(lease) }));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(Response::new(pb::LeaseResponse { lease: None }));
                }
                _ = shutting_down.cancelled() => {
                    return Ok(Response::new(pb::LeaseResponse { lease: None }));
                }
                changed = changes.changed() => if changed.is_err() {
                    return Ok(Response::new(pb::LeaseResponse { lease: None }));
                },
            }
        }
    }

    type DownloadSourceStream = SourceStream;

    async fn download_source(
        &self,
        request: Request<pb::DownloadSourceRequest>,
    ) -> Result<Response<SourceStream>, Status> {
        let (_, extensions, r) = request.into_parts();
        let run = self
            .jobs
            .leased_run(&r.run_id, &r.worker_id)
            .map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let digest = self.jobs.run_input_digest(&run).map_err(status)?;
        let bytes = self.jobs.artifacts().read(&digest).await.map_err(status)?;
        let chunks: Vec<Result<pb::SourceChunk, Status>> = bytes
            .chunks(SOURCE_CHUNK_BYTES)
            .map(|c| Ok(pb::SourceChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let run = self.jobs.tracking().run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let jobs = self.jobs.clone();
        let cancel = tokio::task::spawn_blocking(move || {
            jobs.worker_report(
                &r.run_id,
                &r.worker_id,
                &lines_from_wire(r.lines),
                &metrics_from_wire(r.metrics),
            )
        })
        .await
        .map_err(|e| status(HubError::Internal(format!("report task: {e}"))))?
        .map_err(status)?;
        Ok(Response::new(pb::ReportResponse { cancel }))
    }

    async fn upload_output(
        &self,
        request: Request<Streaming<pb::UploadOutputRequest>>,
    ) -> Result<Response<pb::UploadOutputResponse>, Status> {
        let (_, extensions, mut stream) = request.into_parts();
        let header = receive_header(
            &mut stream,
            "an upload starts with a header naming the file",
            |m| match m.part {
                Some(pb::upload_output_request::Part::Header(h)) => Some(h),
                _ => None,
            },
        )
        .await?;
        let run = self
            .jobs
            .leased_run(&header.run_id, &header.worker_id)
            .map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        shoal_tracking::tracking::check_artifact_path(&header.path).map_err(status)?;
        let (digest, size) = receive_chunks(
            &mut stream,
            self.jobs.artifacts(),
            self.jobs.max_upload_bytes(),
            "output",
            "--max-upload-bytes",
            |m| match m.part {
                Some(pb::upload_output_request::Part::Chunk(c)) => Some(c),
                _ => None,
            },
        )
        .await?;
        self.jobs
            .record_output(&run, &header.path, digest.clone(), size)
            .map_err(status)?;
        Ok(Response::new(pb::UploadOutputResponse { digest }))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let run = self.jobs.tracking().run(&r.run_id).map_err(status)?;
        authorize(&extensions, run_target(&run))?;
        let outcome = match r.outcome.as_str() {
            "exited" => Outcome::Exited(r.code),
            "signaled" => Outcome::Signaled(r.code),
            "canceled" => Outcome::Canceled,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown outcome '{other}': exited, signaled or canceled"
                )))
            }
        };
        self.jobs
            .worker_complete(&r.run_id, &r.worker_id, outcome, r.log_tail)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompleteResponse {}))
    }
}

/// What a call on a leased run acts on, for [`authorize`].
fn run_target(run: &shoal_tracking::tracking::Run) -> Target<'_> {
    Target::Run {
        workspace: &run.workspace,
        run_id: &run.id,
    }
}

/// What a worker receives with a leased run.
fn lease_to_wire(work: LeasedWork, heartbeat_ms: u32) -> pb::Lease {
    match work {
        LeasedWork::Script {
            run,
            command,
            env,
            source_digest,
            source_bytes,
        } => pb::Lease {
            run_id: run.id,
            command,
            env: env.into_iter().collect(),
            source_digest,
            source_bytes,
            heartbeat_ms,
            builtin: None,
            params: Default::default(),
        },
        LeasedWork::Builtin {
            run,
            job,
            dataset_digest,
            dataset_bytes,
        } => pb::Lease {
            run_id: run.id,
            command: Vec::new(),
            env: Default::default(),
            source_digest: dataset_digest,
            source_bytes: dataset_bytes,
            heartbeat_ms,
            builtin: Some(pb::BuiltinJob {
                trainer: job.trainer,
                dataset: job.dataset,
                target: job.target,
                features: job.features,
                register_as: job.register_as.unwrap_or_default(),
            }),
            params: run.params.into_iter().collect(),
        },
    }
}
