//! Shoal's training side: datasets, experiments and runs, the jobs that execute runs (queue,
//! scheduler, local executor, remote-worker leases), sweeps, and run search.
//!
//! # Layout
//! - [`dataset`]: versioned CSV datasets with their profiles.
//! - [`tracking`]: experiments, runs, params, tags, metric series, logs, the artifact index,
//!   MLflow 3 logged models, and what a workspace holds of them.
//! - [`job`]: what a run executes (a built-in trainer or a script).
//! - [`search`]: `shoal-experiment` filters and order-by as run predicates (gRPC and MLflow).
//! - [`jobs`]: submission checks, the queue and scheduler, the `local` executor
//!   ([`jobs::local`]), built-in trainers ([`jobs::builtin`]), worker leases, retraining.
//! - [`registration`]: model versions from run artifacts, the one path for gRPC, MLflow,
//!   built-in runs, workers and sweeps.
//! - [`sweep`]: hyperparameter sweeps: sampling, the controller, early stopping, best run.
//! - [`error`] — [`TrackingError`].

pub mod dataset;
pub mod error;
pub mod job;
pub mod jobs;
pub mod registration;
pub mod search;
pub mod sweep;
pub mod tracking;

pub use dataset::Datasets;
pub use error::{TrackingError, TrackingResult};
pub use jobs::{Jobs, JobsConfig, RetrainCause, Submission};
pub use registration::ArtifactVersion;
pub use sweep::Sweeps;
pub use tracking::Tracking;
