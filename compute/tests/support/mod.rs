//! Helpers shared by the integration tests: start a job on a background task, wait for events
//! and conditions with a deadline instead of fixed sleeps.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::time::Duration;

use shoal_compute::{run_job, ComputeResult, JobEvent, JobOutcome, JobSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; generous so slow CI machines do not flake.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A job running on a background task.
pub struct TestJob {
    pub handle: JoinHandle<ComputeResult<JobOutcome>>,
    pub events: mpsc::Receiver<JobEvent>,
    pub cancel: CancellationToken,
    /// Every event received so far, in order.
    pub seen: Vec<JobEvent>,
}

/// Builds a spec running `script` with `/bin/sh -c` in `workdir`, with a short grace period.
pub fn sh_spec(workdir: &Path, script: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()],
        workdir,
    );
    spec.grace = Duration::from_millis(300);
    spec
}

/// Starts `spec` on a background task.
pub fn start_job(spec: JobSpec) -> TestJob {
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(run_job(spec, tx, cancel.clone()));
    TestJob {
        handle,
        events: rx,
        cancel,
        seen: Vec::new(),
    }
}

impl TestJob {
    /// Receives events until one satisfies `pred`, panicking after [`DEADLINE`].
    pub async fn wait_for_event(&mut self, what: &str, pred: impl Fn(&JobEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.seen.iter().any(&pred) {
                return;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!("event channel closed before {what}; saw {:#?}", self.seen),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits for the job to finish and collects every remaining event. Events are received
    /// while waiting: the runner applies back-pressure, so an undrained channel stalls the job.
    pub async fn finish(mut self) -> (ComputeResult<JobOutcome>, Vec<JobEvent>) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let outcome = loop {
            tokio::select! {
                joined = &mut self.handle => break joined.expect("job task does not panic"),
                Some(event) = self.events.recv() => self.seen.push(event),
                () = tokio::time::sleep_until(deadline) => {
                    panic!("job did not finish before the deadline; saw {:#?}", self.seen)
                }
            }
        };
        // The job has returned, so every sender is gone and this ends.
        while let Some(event) = self.events.recv().await {
            self.seen.push(event);
        }
        (outcome, self.seen)
    }
}

/// Returns the log lines among `events`, in order.
pub fn log_lines(events: &[JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            JobEvent::Log(line) => Some(line.line.clone()),
            _ => None,
        })
        .collect()
}

/// Polls `condition` until it holds, panicking after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a file to exist with a complete first line, and returns that line.
pub async fn wait_for_line_in_file(path: &Path) -> String {
    let mut content = String::new();
    wait_until(&format!("{} to be written", path.display()), || {
        content = std::fs::read_to_string(path).unwrap_or_default();
        content.ends_with('\n')
    })
    .await;
    content.trim().to_string()
}

/// Returns whether a process is gone. A zombie counts as gone: it runs nothing, and whether
/// it has been reaped yet depends on the init process of the machine running the tests.
pub fn process_is_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
