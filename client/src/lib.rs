//! The typed gRPC client of a Shoal hub, shared by the `shoal` CLI, the remote worker and
//! the integration tests.
//!
//! # Layout
//! - [`connect`] — [`HubClient`] (every service over one channel) and the bearer-token
//!   [`TokenInterceptor`].
//! - [`status`] — [`describe_status`], one line for a failed call.
//! - [`transfer`]: streaming uploads (models, baselines, datasets) and downloads.
//! - [`runs`]: submitting a built-in run and waiting for a run to end.
//! - [`error`] — [`ClientError`].

pub mod connect;
pub mod error;
pub mod runs;
pub mod status;
pub mod transfer;

pub use connect::{HubClient, TokenInterceptor};
pub use error::{ClientError, ClientResult};
pub use status::describe_status;
pub use transfer::{download_model, register_model, upload_baseline, upload_dataset};
