//! `TrackingError`, what tracking (datasets, experiments, runs, jobs, sweeps) operations return, and its [`ErrorCode`] for the hub's adapters.

use shoal_store::{
    ErrorCode, InvalidName, IoError, RandomSourceError, ServiceError, StoreError, WorkspaceError,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrackingError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Random(#[from] RandomSourceError),
    #[error(transparent)]
    Registry(#[from] shoal_registry::RegistryError),
    #[error("{0}")]
    Internal(String),
}

pub type TrackingResult<T> = Result<T, TrackingError>;

impl TrackingError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> TrackingError {
        TrackingError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> TrackingError {
        TrackingError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> TrackingError {
        TrackingError::InvalidArgument(message.into())
    }
}

impl ServiceError for TrackingError {
    fn error_code(&self) -> ErrorCode {
        match self {
            TrackingError::NotFound { .. } => ErrorCode::NotFound,
            TrackingError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            TrackingError::InvalidArgument(_) | TrackingError::InvalidName(_) => {
                ErrorCode::InvalidArgument
            }
            TrackingError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            TrackingError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            TrackingError::Workspace(e) => e.error_code(),
            TrackingError::Registry(e) => e.error_code(),
            TrackingError::Storage(_)
            | TrackingError::Io(_)
            | TrackingError::Random(_)
            | TrackingError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Lets a domain's error travel out of [`shoal_store::WorkspaceContents`].
impl From<TrackingError> for WorkspaceError {
    fn from(error: TrackingError) -> WorkspaceError {
        match error {
            TrackingError::Workspace(e) => e,
            other => WorkspaceError::contents(other),
        }
    }
}
