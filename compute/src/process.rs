//! One training job as a process group: spawn, stream, cancel, clean up.
//!
//! [`run_job`] starts the job's command in a process group of its own and reports what it
//! does as [`JobEvent`]s on a channel: every stdout/stderr line, every metric the script writes
//! to its [`SHOAL_METRICS`](crate::metrics_file) file, and warnings. It returns a
//! [`JobOutcome`] once the job and everything it started are gone.
//!
//! # Process lifecycle
//! - The command runs with stdin from `/dev/null`, the runner's environment plus
//!   [`JobSpec::env`], in [`JobSpec::workdir`], as the leader of a new process group, so the
//!   job's children (data loader workers, shell pipelines) can be signalled together.
//! - **Cancel** (the token fires): `SIGTERM` to the whole group, then `SIGKILL` to the group if
//!   any member is still alive after [`JobSpec::grace`]. The outcome is [`JobStatus::Canceled`].
//! - **Normal exit** of the main process: members of its group that are still running (a
//!   forgotten `&`, a daemonised helper) are terminated the same way, `SIGTERM` then `SIGKILL`
//!   after the grace period, so a finished run leaves no orphans behind holding GPUs or ports.
//!   The outcome still reports the main process's own exit status.
//! - **Dropped future** (the caller's task is aborted): the group gets `SIGKILL` at once.
//!
//! Processes that leave the group on purpose (`setsid`, double fork into a new group) are
//! beyond reach of process-group signals; containing those needs cgroups, which this crate does
//! not set up. If such a process keeps the job's stdout or stderr open, log reading stops
//! [`PIPE_DRAIN_TIMEOUT`] after the group is gone, with a warning event.
//!
//! # Logs
//! Output is split into lines on `\n` (a trailing `\r` is dropped), decoded as lossy UTF-8.
//! A line longer than [`MAX_LOG_LINE_BYTES`] is cut into pieces of that size, so a script that
//! prints a huge blob without newlines cannot grow the runner's memory. The last
//! [`LOG_TAIL_LINES`] lines of both streams, in arrival order, are kept for the outcome.
//!
//! # Back-pressure
//! Events are sent with `Sender::send().await`: a slow consumer slows the reading of the
//! job's output, and eventually the job itself (its pipe fills), rather than buffering without
//! bound. If the receiver is dropped, events are discarded but output is still drained, so the
//! job never blocks on a full pipe.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::error::{ComputeError, ComputeResult};
use crate::metrics_file::{now_ms, MetricPoint, MetricsFileTail, MetricsRecord};
use crate::sandbox::{InheritEnv, PreparedSandbox, Sandbox, SandboxError};

/// Grace period between `SIGTERM` and `SIGKILL` when a job spec does not choose one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Longest log line sent as one event; longer lines are split.
pub const MAX_LOG_LINE_BYTES: usize = 64 * 1024;

/// Number of log lines kept for [`JobOutcome::log_tail`].
pub const LOG_TAIL_LINES: usize = 50;

/// Environment variable holding the metrics file path.
pub const METRICS_ENV_VAR: &str = "SHOAL_METRICS";

/// How long log reading continues after the process group is gone, for pipes held open by a
/// process that escaped the group.
pub const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the metrics file is checked for new lines while the job runs.
const METRICS_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often the process group is checked for survivors during termination.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Program and arguments; `argv[0]` is looked up on `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// Working directory, typically the unpacked snapshot. Must exist.
    pub workdir: PathBuf,
    /// Variables added to the inherited environment (`SHOAL_RUN_ID` and the like); later
    /// entries win over earlier ones and over inherited values.
    pub env: Vec<(String, String)>,
    /// Which of the runner's own variables the job inherits.
    pub inherit_env: InheritEnv,
    /// Folders hidden from the job (see [`crate::sandbox`]); empty hides nothing.
    pub sandbox: Sandbox,
    /// Where the job writes metrics. When set, the file is created empty (truncated if it
    /// exists, parent folders created), its path is exported as `SHOAL_METRICS` (overriding any
    /// value in `env`) and it is tailed for [`JobEvent::Metric`]s. A relative path is taken
    /// relative to `workdir`.
    pub metrics_file: Option<PathBuf>,
    /// Time between `SIGTERM` and `SIGKILL`, for checkpoints to be written on cancel.
    pub grace: Duration,
    /// Where to keep a [`GroupRecord`](crate::GroupRecord) while the job runs, so that a
    /// runner restarted after a crash can kill what its predecessor left behind
    /// ([`kill_leftover_group`](crate::kill_leftover_group)). Removed once the group is gone.
    pub group_file: Option<PathBuf>,
}

impl JobSpec {
    /// Builds a spec with no extra environment, no metrics file and [`DEFAULT_GRACE`].
    pub fn new(argv: Vec<String>, workdir: impl Into<PathBuf>) -> Self {
        JobSpec {
            argv,
            workdir: workdir.into(),
            env: Vec::new(),
            inherit_env: InheritEnv::All,
            sandbox: Sandbox::default(),
            metrics_file: None,
            grace: DEFAULT_GRACE,
            group_file: None,
        }
    }
}

/// Something that happened while a job ran.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// A line the job printed.
    Log(LogLine),
    /// A metric the job wrote to its metrics file.
    Metric(MetricPoint),
    /// A problem worth showing the user that does not fail the run, e.g. a malformed metrics
    /// line ("metrics file line 3: invalid JSON: ...").
    Warning(String),
}

/// One line of job output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Which pipe it came from, so UIs can colour stderr.
    pub stream: LogStream,
    /// The text, without its line ending.
    pub line: String,
    /// When the runner read it, milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

/// The job's output pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// The main process exited with this code (0 is success).
    Exited(i32),
    /// The main process was killed by this signal, not at the runner's request (OOM killer,
    /// a segfault, someone's `kill`).
    Signaled(i32),
    /// The run was canceled through its token and the process group terminated.
    Canceled,
}

impl JobStatus {
    /// Returns whether the job succeeded: exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, JobStatus::Exited(0))
    }

    fn from_exit_status(status: ExitStatus) -> Self {
        if let Some(code) = status.code() {
            JobStatus::Exited(code)
        } else if let Some(signal) = status.signal() {
            JobStatus::Signaled(signal)
        } else {
            // `wait` only reports exits and signals for a process it reaped; keep a failing
            // code rather than claim success if that ever changes.
            JobStatus::Exited(-1)
        }
    }
}

/// The result of a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// How it ended.
    pub status: JobStatus,
    /// The last [`LOG_TAIL_LINES`] lines of output, oldest first: what a failed run's summary
    /// shows without fetching the full log.
    pub log_tail: Vec<String>,
    /// Time from spawn until the process group was gone.
    pub duration: Duration,
}

/// Builds the job's sandbox, or `None` when there is nothing to hide or the kernel cannot
/// hide it and the sandbox is not required (logged).
fn prepare_sandbox(sandbox: &Sandbox) -> ComputeResult<Option<Arc<PreparedSandbox>>> {
    if sandbox.is_empty() {
        return Ok(None);
    }
    match sandbox.prepare() {
        Ok(prepared) => Ok(Some(Arc::new(prepared))),
        Err(SandboxError::Unsupported(error)) if !sandbox.required => {
            warn!(%error, hidden = ?sandbox.hide, "running the job without hiding folders from it: this kernel has no Landlock");
            Ok(None)
        }
        Err(error) => Err(ComputeError::Sandbox(error)),
    }
}

/// Runs one job to completion, streaming its logs and metrics to `events`.
///
/// Returns when the main process has exited (or the run was canceled) and the rest of its
/// process group has been terminated; see the module docs for the lifecycle. Never blocks the
/// runtime: waiting, pipe reading and metrics tailing are all async.
///
/// Keep receiving from `events` while awaiting this (or drop the receiver): events are sent
/// with back-pressure, so a full, unread channel pauses the job's output and then the job.
/// Must be called within a Tokio runtime; it spawns tasks for the output pipes and the
/// metrics file.
///
/// # Errors
/// [`ComputeError::EmptyCommand`], [`ComputeError::WorkdirMissing`],
/// [`ComputeError::CommandNotFound`] or [`ComputeError::Spawn`] when the job cannot start;
/// [`ComputeError::Io`] when the metrics file cannot be created; [`ComputeError::Wait`] if
/// waiting on the process fails (its group is then killed). A job that starts and fails is not
/// an error: it is an outcome with a non-zero status.
pub async fn run_job(
    spec: JobSpec,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
) -> ComputeResult<JobOutcome> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(ComputeError::EmptyCommand);
    };
    let workdir_is_dir = tokio::fs::metadata(&spec.workdir)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if !workdir_is_dir {
        return Err(ComputeError::WorkdirMissing {
            path: spec.workdir.clone(),
        });
    }
    if cancel.is_cancelled() {
        return Ok(JobOutcome {
            status: JobStatus::Canceled,
            log_tail: Vec::new(),
            duration: Duration::ZERO,
        });
    }
    let metrics_path = match &spec.metrics_file {
        Some(path) => Some(create_metrics_file(&spec.workdir, path).await?),
        None => None,
    };

    let sandbox = prepare_sandbox(&spec.sandbox)?;
    let mut command = Command::new(program);
    if spec.inherit_env != InheritEnv::All {
        command.env_clear().envs(spec.inherit_env.inherited());
    }
    command
        .args(args)
        .current_dir(&spec.workdir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The leader dies with the runner's thread even when the runner is SIGKILLed; the rest
    // of the group is found again through the group record.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(sandbox) = &sandbox {
                sandbox.restrict_self()?;
            }
            Ok(())
        });
    }
    if let Some(path) = &metrics_path {
        command.env(METRICS_ENV_VAR, path);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ComputeError::CommandNotFound {
                command: program.clone(),
            }
        } else {
            ComputeError::Spawn {
                command: program.clone(),
                source,
            }
        }
    })?;
    let pid = child
        .id()
        .expect("a child that has not been waited on has a pid");
    // With `process_group(0)` the child leads a new group whose id is its pid.
    let mut group = ProcessGroup::new(pid);
    debug!(pid, command = %program, "job started");
    if let Some(path) = &spec.group_file {
        if let Some(record) = crate::leftover::GroupRecord::for_leader(pid) {
            if let Err(error) = crate::leftover::write_group_record(path, &record) {
                warn!(pid, path = %path.display(), %error, "cannot write the process group record");
            }
        }
    }

    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
    let stdout = child.stdout.take().expect("stdout was configured as piped");
    let stderr = child.stderr.take().expect("stderr was configured as piped");
    let mut pumps = vec![
        spawn_pump(stdout, LogStream::Stdout, pid, &events, &tail),
        spawn_pump(stderr, LogStream::Stderr, pid, &events, &tail),
    ];
    let metrics_stop = CancellationToken::new();
    // Stops the tailer if this future is dropped mid-run.
    let _metrics_stop_guard = metrics_stop.clone().drop_guard();
    let metrics_task = metrics_path.map(|path| {
        tokio::spawn(
            tail_metrics(path, events.clone(), metrics_stop.clone())
                .instrument(info_span!("job_metrics", pid)),
        )
    });

    let status = tokio::select! {
        exit = child.wait() => {
            let exit = exit.map_err(|source| ComputeError::Wait { pid, source })?;
            // Cancel during this cleanup skips the rest of the grace period.
            group.terminate(&mut child, spec.grace, &cancel).await;
            JobStatus::from_exit_status(exit)
        }
        () = cancel.cancelled() => {
            debug!(pid, "job canceled, terminating its process group");
            group.terminate(&mut child, spec.grace, &CancellationToken::new()).await;
            child.wait().await.map_err(|source| ComputeError::Wait { pid, source })?;
            JobStatus::Canceled
        }
    };
    group.disarm();
    if let Some(path) = &spec.group_file {
        let _ = std::fs::remove_file(path);
    }

    let drained = tokio::time::timeout(PIPE_DRAIN_TIMEOUT, async {
        for pump in &mut pumps {
            // A pump only ends by returning; a panic inside it is a bug already reported by
            // the panic hook, and the run's outcome does not depend on it.
            let _ = pump.await;
        }
    })
    .await;
    if drained.is_err() {
        for pump in &pumps {
            pump.abort();
        }
        warn!(
            pid,
            "job output still held open after its process group ended"
        );
        let _ = events
            .send(JobEvent::Warning(
                "job output is still held open by a process outside the job's process group; \
                 stopped reading its logs"
                    .to_string(),
            ))
            .await;
    }
    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }

    let log_tail = lock_tail(&tail).iter().cloned().collect();
    debug!(pid, ?status, "job finished");
    Ok(JobOutcome {
        status,
        log_tail,
        duration: started.elapsed(),
    })
}

/// Creates the metrics file empty and returns its absolute-or-workdir-relative path.
async fn create_metrics_file(workdir: &Path, path: &Path) -> ComputeResult<PathBuf> {
    let path = if path.is_relative() {
        workdir.join(path)
    } else {
        path.to_path_buf()
    };
    // The job runs in `workdir`, so a path relative to the runner's folder would point
    // elsewhere from the job's: export it absolute.
    let path = std::path::absolute(&path).map_err(|e| ComputeError::io("resolve", &path, e))?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ComputeError::io("create", parent, e))?;
    }
    tokio::fs::File::create(&path)
        .await
        .map_err(|e| ComputeError::io("create metrics file", &path, e))?;
    Ok(path)
}

type LogTail = Arc<Mutex<VecDeque<String>>>;

fn lock_tail(tail: &LogTail) -> std::sync::MutexGuard<'_, VecDeque<String>> {
    // The lock is only held to push or copy strings; a poisoned lock still holds valid lines.
    tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawn_pump<R>(
    reader: R,
    stream: LogStream,
    pid: u32,
    events: &mpsc::Sender<JobEvent>,
    tail: &LogTail,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let sink = LogSink {
        stream,
        events: events.clone(),
        tail: Arc::clone(tail),
    };
    tokio::spawn(pump_lines(reader, sink).instrument(info_span!("job_output", pid, ?stream)))
}

/// Where one stream's lines go.
struct LogSink {
    stream: LogStream,
    events: mpsc::Sender<JobEvent>,
    tail: LogTail,
}

impl LogSink {
    async fn emit(&self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = String::from_utf8_lossy(raw).into_owned();
        {
            let mut tail = lock_tail(&self.tail);
            if tail.len() == LOG_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        // A closed channel means nobody is listening any more; keep draining regardless.
        let _ = self
            .events
            .send(JobEvent::Log(LogLine {
                stream: self.stream,
                line,
                ts_ms: now_ms(),
            }))
            .await;
    }
}

/// Reads `reader` to the end, emitting lines of at most [`MAX_LOG_LINE_BYTES`].
async fn pump_lines<R: AsyncRead + Unpin>(reader: R, sink: LogSink) {
    let mut reader = BufReader::with_capacity(MAX_LOG_LINE_BYTES, reader);
    let mut line: Vec<u8> = Vec::new();
    // After a forced split, a newline right at the cut ends the piece already sent rather
    // than producing an empty line.
    let mut just_split = false;
    loop {
        let (consumed, complete) = {
            let available = match reader.fill_buf().await {
                Ok(available) => available,
                Err(error) => {
                    warn!(%error, "failed to read job output");
                    break;
                }
            };
            if available.is_empty() {
                break;
            }
            if just_split && available[0] == b'\n' {
                just_split = false;
                (1, false)
            } else {
                just_split = false;
                let room = MAX_LOG_LINE_BYTES - line.len();
                let window = &available[..available.len().min(room)];
                match window.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&window[..i]);
                        (i + 1, true)
                    }
                    None => {
                        line.extend_from_slice(window);
                        let full = line.len() >= MAX_LOG_LINE_BYTES;
                        just_split = full;
                        (window.len(), full)
                    }
                }
            }
        };
        reader.consume(consumed);
        if complete {
            sink.emit(&line).await;
            line.clear();
        }
    }
    if !line.is_empty() {
        sink.emit(&line).await;
    }
}

/// Polls the metrics file until `stop` fires, then reads the rest.
async fn tail_metrics(path: PathBuf, events: mpsc::Sender<JobEvent>, stop: CancellationToken) {
    let mut tail = MetricsFileTail::new(path);
    loop {
        let at_end = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(METRICS_POLL_INTERVAL) => false,
        };
        for record in tail.read_new(at_end).await {
            match record {
                MetricsRecord::Points(points) => {
                    for point in points {
                        let _ = events.send(JobEvent::Metric(point)).await;
                    }
                }
                MetricsRecord::Warning(message) => {
                    let _ = events.send(JobEvent::Warning(message)).await;
                }
            }
        }
        if at_end {
            return;
        }
    }
}

// === impl ProcessGroup ===

/// The job's process group; kills it on drop unless disarmed, so an aborted run cannot leave
/// processes behind.
#[derive(Debug)]
struct ProcessGroup {
    pgid: libc::pid_t,
    armed: bool,
}

impl ProcessGroup {
    fn new(leader_pid: u32) -> Self {
        ProcessGroup {
            pgid: libc::pid_t::try_from(leader_pid).expect("Linux pids fit in pid_t"),
            armed: true,
        }
    }

    /// Stops every member: `SIGTERM`, then `SIGKILL` once `grace` passes or `hurry` fires.
    /// Reaps the leader along the way, since its zombie would otherwise count as a member.
    async fn terminate(&self, leader: &mut Child, grace: Duration, hurry: &CancellationToken) {
        let _ = leader.try_wait();
        if !self.is_alive() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let _ = leader.try_wait();
            if !self.is_alive() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = hurry.cancelled() => break,
                () = tokio::time::sleep(GROUP_POLL_INTERVAL) => {}
            }
        }
        debug!(
            pgid = self.pgid,
            "process group outlived its grace period, killing it"
        );
        self.signal(libc::SIGKILL);
    }

    /// Returns whether any process (zombies included) is still in the group.
    fn is_alive(&self) -> bool {
        // SAFETY: killpg with signal 0 sends nothing; it only checks for existence.
        let result = unsafe { libc::killpg(self.pgid, 0) };
        result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain syscall with integer arguments; the group was created by us.
        let result = unsafe { libc::killpg(self.pgid, signal) };
        if result != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                warn!(pgid = self.pgid, signal, %error, "failed to signal job process group");
            }
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.signal(libc::SIGKILL);
        }
    }
}
