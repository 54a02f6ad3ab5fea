//! Running Shoal training jobs on one machine.
//!
//! Both the hub's `local` compute target (a subprocess on the hub host) and remote workers
//! (`shoal-hub worker --hub URL`) run jobs through this crate, so a run behaves the same
//! wherever it lands: the submitted source folder travels as a deterministic snapshot, the
//! training command runs in its own process group with logs and metrics streamed as events,
//! cancellation takes down every process the job started, and files under `outputs/` are listed
//! with digests for upload.
//!
//! Everything here is Linux/Unix only: process groups and signals are the mechanism.
//!
//! # Layout
//! - [`snapshot`] — [`pack_dir`] / [`unpack`], the `.gitignore`- and `.shoalignore`-aware source
//!   archive.
//! - [`process`] — [`run_job`], one job as a process group, with [`JobEvent`]s while it runs.
//! - [`metrics_file`]: the `SHOAL_METRICS` line format and its parser.
//! - [`outputs`] — [`collect_outputs`], the files a run leaves under `outputs/`.
//! - [`leftover`] — [`kill_leftover_group`], for a runner restarted after a crash.
//! - [`runner`]: what the hub's local executor and remote workers share around a job: the run
//!   folder's files, snapshot unpacking, event batches, leftover clean-up.
//! - [`sandbox`]: what a job may see: an allow-listed environment, folders hidden with
//!   Landlock.
//! - [`error`] — [`ComputeError`], shared by all of the above.

pub mod error;
pub mod leftover;
pub mod metrics_file;
pub mod outputs;
pub mod process;
pub mod runner;
pub mod sandbox;
pub mod snapshot;

pub use error::{ComputeError, ComputeResult};
pub use leftover::{kill_leftover_group, write_group_record, GroupRecord};
pub use metrics_file::{now_ms, parse_metrics_line, MetricPoint, MAX_METRICS_LINE_BYTES};
pub use outputs::{collect_outputs, OutputFile};
pub use process::{
    run_job, JobEvent, JobOutcome, JobSpec, JobStatus, LogLine, LogStream, DEFAULT_GRACE,
    LOG_TAIL_LINES, MAX_LOG_LINE_BYTES, METRICS_ENV_VAR, PIPE_DRAIN_TIMEOUT,
};
pub use runner::{
    kill_leftovers, pump_events, unpack_snapshot_file, EventBatch, GROUP_FILE, METRICS_FILE,
};
pub use sandbox::{InheritEnv, Sandbox, SandboxError, ENV_ALLOW_LIST};
pub use snapshot::{
    pack_dir, pack_dir_to_writer, unpack, Snapshot, SnapshotInfo, UnpackSummary,
    SHOAL_IGNORE_FILENAME,
};
