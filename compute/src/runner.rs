//! What a runner of jobs does around [`run_job`](crate::run_job), the same on the hub's own
//! host and on a remote worker: where a run's folder keeps its metrics file and process-group
//! record, unpacking a snapshot file into a run folder, batching a job's events for the
//! hub, and killing what runs left behind when their runner died.

use std::path::Path;

use tokio::sync::mpsc;

use crate::error::{ComputeError, ComputeResult};
use crate::metrics_file::now_ms;
use crate::{JobEvent, MetricPoint, UnpackSummary};

/// Most events handed over in one batch.
const EVENT_BATCH: usize = 500;

/// Name of the metrics file in a run's folder (`SHOAL_METRICS`).
pub const METRICS_FILE: &str = ".shoal/metrics.jsonl";
/// Where a run's folder records its process group while it runs (see
/// [`kill_leftover_group`](crate::kill_leftover_group)).
pub const GROUP_FILE: &str = ".shoal/group.json";

/// A batch of what a job reported: log lines with their times, and metric points.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventBatch {
    pub lines: Vec<(i64, String)>,
    pub metrics: Vec<MetricPoint>,
}

impl EventBatch {
    fn push(&mut self, event: JobEvent) {
        match event {
            JobEvent::Log(line) => self.lines.push((line.ts_ms, line.line)),
            JobEvent::Metric(point) => self.metrics.push(point),
            JobEvent::Warning(warning) => self
                .lines
                .push((now_ms(), format!("[shoal] warning: {warning}"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.metrics.is_empty()
    }
}

/// Receives job events until the job's sender is gone, handing them to `record` in batches of
/// whatever arrived together (at most 500 events).
pub async fn pump_events<F, Fut>(mut events: mpsc::Receiver<JobEvent>, mut record: F)
where
    F: FnMut(EventBatch) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while let Some(first) = events.recv().await {
        let mut batch = EventBatch::default();
        batch.push(first);
        while batch.lines.len() + batch.metrics.len() < EVENT_BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        record(batch).await;
    }
}

/// Unpacks the snapshot file `archive` into the run folder `dest` (created), refusing
/// archives over `limit` bytes or with unsafe paths.
///
/// # Errors
/// The archive cannot be opened, or [`unpack`](crate::unpack) refuses it.
pub async fn unpack_snapshot_file(
    archive: &Path,
    dest: &Path,
    limit: u64,
) -> ComputeResult<UnpackSummary> {
    let (archive, folder) = (archive.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&folder).map_err(|e| ComputeError::io("create", &folder, e))?;
        let file =
            std::fs::File::open(&archive).map_err(|e| ComputeError::io("open", &archive, e))?;
        crate::unpack(std::io::BufReader::new(file), &folder, limit)
    })
    .await
    .map_err(|e| ComputeError::io("unpack into", dest, std::io::Error::other(e.to_string())))?
}

/// Kills the process groups that runs in `{dir}/*/` left behind when their runner died, and
/// returns how many there were.
pub fn kill_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        match crate::kill_leftover_group(&entry.path().join(GROUP_FILE)) {
            Ok(true) => killed += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(dir = %entry.path().display(), %error, "cannot check for a leftover job")
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_arrive_in_batches_in_order() {
        let (tx, rx) = mpsc::channel(16);
        for i in 0..3 {
            tx.send(JobEvent::Warning(format!("w{i}"))).await.unwrap();
        }
        drop(tx);
        let mut batches = Vec::new();
        pump_events(rx, |batch| {
            batches.push(batch);
            async {}
        })
        .await;
        let lines: Vec<String> = batches
            .iter()
            .flat_map(|b| b.lines.iter().map(|(_, l)| l.clone()))
            .collect();
        assert_eq!(
            lines,
            vec![
                "[shoal] warning: w0",
                "[shoal] warning: w1",
                "[shoal] warning: w2"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_snapshot_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.tar.gz");
        let error = unpack_snapshot_file(&missing, &dir.path().join("run"), 1 << 20)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing.tar.gz"), "{error}");
    }
}
