//! Training runs in tests: submitting, reading logs, and remote workers.

use std::path::Path;

use futures::StreamExt;
use shoal_proto::training as pb;

use crate::{TestHub, DEADLINE};

impl TestHub {
    /// Submits a run: its header, then the source snapshot in chunks.
    pub async fn submit_run(
        &self,
        header: pb::SubmitRunHeader,
        snapshot: Option<Vec<u8>>,
    ) -> pb::Run {
        let mut client = self.client().await;
        let mut messages = vec![pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Header(header)),
        }];
        if let Some(bytes) = snapshot {
            messages.extend(bytes.chunks(64 * 1024).map(|c| pb::SubmitRunRequest {
                part: Some(pb::submit_run_request::Part::Chunk(c.to_vec())),
            }));
        }
        client
            .training
            .submit_run(futures::stream::iter(messages))
            .await
            .expect("run submitted")
            .into_inner()
    }

    /// A run's log lines; with `follow`, until the run ends.
    pub async fn run_logs(&self, id: &str, follow: bool) -> Vec<String> {
        let mut stream = self
            .client()
            .await
            .training
            .stream_run_logs(pb::RunLogsRequest {
                run_id: id.into(),
                follow,
                from_line: 0,
            })
            .await
            .expect("logs")
            .into_inner();
        let mut lines = Vec::new();
        // Following ends with the run: a run that never ends fails here rather than hangs.
        tokio::time::timeout(DEADLINE, async {
            while let Some(message) = stream.next().await {
                lines.extend(
                    message
                        .expect("log message")
                        .lines
                        .into_iter()
                        .map(|l| l.text),
                );
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the logs of run {id} did not end within {DEADLINE:?}"));
        lines
    }
}

/// A worker on a runtime of its own; dropping the runtime makes it vanish at once, as a
/// killed machine would.
pub struct TestWorker {
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestWorker {
    pub fn start(hub: &TestHub, id: &str, work_dir: &Path) -> TestWorker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("worker runtime");
        let config = shoal_worker::WorkerConfig {
            hub_url: hub.grpc_url(),
            token: Some(hub.token.clone()),
            ca: hub.ca_path.clone(),
            worker_id: id.into(),
            labels: vec!["arm".into(), "cpu".into()],
            work_dir: work_dir.to_path_buf(),
        };
        runtime.spawn(async move {
            if let Err(error) = shoal_worker::run_worker(config, std::future::pending()).await {
                panic!("worker failed: {error}");
            }
        });
        TestWorker {
            runtime: Some(runtime),
        }
    }

    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
