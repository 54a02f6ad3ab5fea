//! The gRPC API: tonic service implementations only. Each converts wire messages to domain
//! calls and domain errors to `Status` through [`status`]; no domain logic lives here.
//!
//! Access: [`guard`] authenticates every call and checks it against the table in [`rules`];
//! each handler calls [`authorize`] once with what the call acts on.

mod access;
mod deployments;
mod fleet;
pub mod guard;
mod registry;
pub mod rules;
mod secrets;
mod telemetry;
mod training;
mod worker;
mod workspaces;

pub use access::AccessApi;
pub use deployments::DeploymentApi;
pub use fleet::FleetApi;
pub use registry::RegistryApi;
pub use secrets::SecretApi;
pub use telemetry::{alert_to_wire, TelemetryApi};
pub use training::{dataset_to_wire, run_to_wire, TrainingApi};
pub use worker::WorkerApi;
pub use workspaces::WorkspaceApi;

pub(crate) use guard::{authorize, authorize_in, caller};
pub use guard::{AccessLayer, CallContext};

use tonic::Status;

use shoal_store::{ErrorCode, ServiceError};

/// The one place a domain error becomes a gRPC status. Internal errors are logged in full and
/// reach the caller as a generic message.
pub fn status(error: impl ServiceError) -> Status {
    let message = error.to_string();
    match error.error_code() {
        ErrorCode::NotFound => Status::not_found(message),
        ErrorCode::AlreadyExists => Status::already_exists(message),
        ErrorCode::InvalidArgument => Status::invalid_argument(message),
        ErrorCode::FailedPrecondition => Status::failed_precondition(message),
        ErrorCode::ResourceExhausted => Status::resource_exhausted(message),
        ErrorCode::Internal => {
            tracing::error!(error = %message, "internal error");
            Status::internal("internal error; see the hub's log")
        }
    }
}

/// The workspace of a request; empty means `default`.
pub(crate) fn workspace_or_default(workspace: &str) -> &str {
    if workspace.is_empty() {
        shoal_store::DEFAULT_WORKSPACE
    } else {
        workspace
    }
}

/// Reads the first message of a streaming upload, which must be its header. `header_of`
/// returns the header of a message, or `None` for any other message (a chunk first).
///
/// # Errors
/// The stream's own error, or `InvalidArgument` with `expected` ("an upload starts with a
/// header naming the model") when the stream is empty or starts with something else.
pub(crate) async fn receive_header<M, H>(
    stream: &mut tonic::Streaming<M>,
    expected: &str,
    header_of: impl FnOnce(M) -> Option<H>,
) -> Result<H, Status> {
    use futures::StreamExt;
    match stream.next().await {
        Some(Ok(message)) => {
            header_of(message).ok_or_else(|| Status::invalid_argument(expected.to_string()))
        }
        Some(Err(e)) => Err(e),
        None => Err(Status::invalid_argument(expected.to_string())),
    }
}

/// Streams the chunks that follow an upload's header into the artifact store, refusing the
/// upload as soon as it passes `limit` bytes. `chunk_of` returns a message's bytes, or `None`
/// for a message that is not a chunk (a second header), which aborts the upload.
///
/// # Errors
/// `ResourceExhausted` over the limit (naming `what` and `limit_flag`), `InvalidArgument` for a
/// message out of place, the stream's own error, or a storage error.
pub(crate) async fn receive_chunks<M>(
    stream: &mut tonic::Streaming<M>,
    artifacts: &shoal_store::ArtifactStore,
    limit: u64,
    what: &str,
    limit_flag: &str,
    chunk_of: impl Fn(M) -> Option<Vec<u8>>,
) -> Result<(String, u64), Status> {
    use futures::StreamExt;
    let too_large = |size: u64| {
        Status::resource_exhausted(format!(
            "{what} is {size} bytes, over the hub's limit of {limit} bytes ({limit_flag})"
        ))
    };
    let mut writer = artifacts.writer().await.map_err(status)?;
    while let Some(message) = stream.next().await {
        let chunk = match message.map(&chunk_of) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                writer.abort().await;
                return Err(Status::invalid_argument(
                    "only the first upload message may be a header",
                ));
            }
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        let size = writer.written() + chunk.len() as u64;
        if size > limit {
            writer.abort().await;
            return Err(too_large(size));
        }
        if let Err(e) = writer.write(&chunk).await {
            writer.abort().await;
            return Err(status(e));
        }
    }
    writer.finish().await.map_err(status)
}
